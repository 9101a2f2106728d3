"""``python -m ptxseg`` (and ``torchrun -m ptxseg train ...``) runs the command line."""

from ptxseg.cli import run

if __name__ == "__main__":
    run()
