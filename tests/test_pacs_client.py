"""The Orthanc client's guard on ids read from Orthanc's answers (no server needed)."""

from __future__ import annotations

import pytest

from ptxseg.pacs.orthanc import OrthancError, resource


def test_an_orthanc_id_becomes_a_path_and_anything_else_is_refused():
    good = "45315b64-27a850ee-62551a29-e2d366a9-548f58fb"
    assert resource("instances", good) == f"/instances/{good}"
    for bad in ("../tools/reset", f"{good}/../../system", good.upper(), "", "1.2.3"):
        with pytest.raises(OrthancError, match="not an Orthanc instance id"):
            resource("instances", bad)
