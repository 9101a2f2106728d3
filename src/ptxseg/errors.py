"""The one exception type that ptxseg raises for bad input.

Every error a user can cause (a corrupt DICOM, an RLE string that overruns its
image, a wrong file type, a bad option) is a :class:`PtxsegError`. The command
line prints it as one line, ``ptxseg: error: <where>: <reason>``, and exits
with code 2, without a traceback.
"""

from __future__ import annotations

from os import PathLike


class PtxsegError(Exception):
    """Bad input, named by where it came from and why it was refused.

    Args:
        where: the file, ImageId or option the problem is about.
        reason: one short sentence, no trailing period needed.
        code: a stable machine-readable tag (``"not_dicom"``, ``"modality"`` …)
            that callers such as the converter's QC use to classify the failure.
    """

    def __init__(self, where: str | PathLike[str], reason: str, code: str = "error") -> None:
        self.where = str(where)
        self.reason = reason
        self.code = code
        super().__init__(f"{self.where}: {reason}")
