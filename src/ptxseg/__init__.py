"""ptxseg: pneumothorax segmentation on chest radiographs.

Data layer (DICOM, RLE, SIIM datasets), models, training, evaluation and a
triage service. See the README and ``docs/`` for the user guide.
"""

from ptxseg.errors import PtxsegError

__version__ = "0.1.0"

__all__ = ["PtxsegError", "__version__"]
