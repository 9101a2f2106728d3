"""Synthetic chest-radiograph phantoms with pneumothorax and lung masks (``ptxseg synth``)."""

from ptxseg.synth.phantom import Phantom, make_phantom

__all__ = ["Phantom", "make_phantom"]
