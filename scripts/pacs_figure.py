"""The figure of docs/pacs.md: what ptxseg stored in Orthanc for some radiographs, as a viewer shows it.

    PTXSEG_ORTHANC_USER=… PTXSEG_ORTHANC_PASSWORD=… .venv/bin/python scripts/pacs_figure.py \\
        --orthanc http://127.0.0.1:8042 --out docs/img/pacs_results.jpg SOP_UID [SOP_UID …]

For each source (by SOP Instance UID) one row: Orthanc's own rendering (``/instances/{id}/preview``) of the
Secondary Capture ptxseg stored, and the SEG read back from Orthanc with highdicom and drawn on the source
(pneumothorax red, right lung blue, left lung green) — what a SEG-capable viewer such as OHIF overlays.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import cv2
import highdicom as hd
import numpy as np

from ptxseg.io.dicom import read_dicom
from ptxseg.pacs.orthanc import OrthancClient

COLOURS = {1: (255, 70, 70), 2: (63, 182, 255), 3: (86, 211, 100)}  # RGB per segment
ROW = 480
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def _fit(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    return cv2.resize(img, (round(w * ROW / h), ROW), interpolation=cv2.INTER_AREA)


def _seg_refs(tags: dict) -> set[str]:
    """The SOP Instance UIDs a SEG's Referenced Series Sequence names (empty for anything else)."""
    series = tags.get("ReferencedSeriesSequence", [])
    return {r["ReferencedSOPInstanceUID"] for s in series for r in s.get("ReferencedInstanceSequence", [])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sops", nargs="+")
    ap.add_argument("--orthanc", required=True)
    ap.add_argument("--out", type=Path, default=Path("docs/img/pacs_results.jpg"))
    args = ap.parse_args()
    client = OrthancClient(args.orthanc, (os.environ["PTXSEG_ORTHANC_USER"], os.environ["PTXSEG_ORTHANC_PASSWORD"]))
    tags = {i: client.tags(i) for i in client.get_json("/instances")}
    rows = []
    for sop in args.sops:
        source = next(i for i, t in tags.items() if t.get("SOPInstanceUID") == sop)
        mine = {i: t for i, t in tags.items() if t.get("Manufacturer") == "ptxseg"}
        captures = {i: t for i, t in mine.items() if t["SOPClassUID"] == SECONDARY_CAPTURE}
        sc = next(i for i, t in captures.items() if sop in {r["ReferencedSOPInstanceUID"] for r in t.get("SourceImageSequence", [])})
        seg_id = next(i for i, t in mine.items() if sop in _seg_refs(t))
        preview = cv2.imdecode(np.frombuffer(client.request("GET", f"/instances/{sc}/preview").content, np.uint8), cv2.IMREAD_COLOR)
        tmp = Path(f"/tmp/ptxseg-figure-{seg_id}.dcm")
        tmp.write_bytes(client.file(seg_id))
        seg = hd.seg.segread(tmp)
        src = Path(f"/tmp/ptxseg-figure-{source}.dcm")
        src.write_bytes(client.file(source))
        image = (read_dicom(src)[0] * 255).astype(np.uint8)
        drawn = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
        for number in seg.get_segment_numbers():
            mask = seg.get_pixels_by_source_instance([sop], segment_numbers=[number], combine_segments=False)[0, ..., 0] > 0
            contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            if number == 1:
                drawn[mask] = (0.55 * drawn[mask] + 0.45 * np.array(COLOURS[1])).astype(np.uint8)
            cv2.drawContours(drawn, contours, -1, COLOURS[number], max(1, image.shape[1] // 300))
        rows.append(np.hstack([_fit(preview), _fit(cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))]))
        tmp.unlink()
        src.unlink()
    width = max(r.shape[1] for r in rows)
    figure = np.vstack([np.pad(r, ((0, 6), (0, width - r.shape[1]), (0, 0))) for r in rows])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), figure, [cv2.IMWRITE_JPEG_QUALITY, 88])
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
