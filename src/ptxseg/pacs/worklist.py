"""The analysed studies of an Orthanc server in triage order, from the metadata the worker wrote.

One row per study holding an analysed radiograph: its most urgent radiograph's priority, severity, probability,
side, ratio and QC verdict. Order: priority (severity), then probability (higher first), then age (the longest
waiting first, by the time Orthanc received the radiograph). Studies whose radiographs were not triaged (lateral,
non-chest) or failed are listed after, with the reason.
"""

from __future__ import annotations

from typing import Any

from ptxseg.pacs.orthanc import OrthancClient


def _float(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else float("nan")
    except ValueError:
        return float("nan")


def worklist(client: OrthancClient) -> list[dict[str, Any]]:
    """Rows (dicts) of every study with a radiograph the worker looked at, in triage order."""
    rows = []
    for study in client.studies():
        info = client.study(study)
        best: dict[str, Any] | None = None
        for inst in client.study_instances(study):
            meta = client.metadata(inst["ID"])
            status = meta.get("ptxseg-status")
            if status is None:
                continue
            row = {
                "study": study,
                "instance": inst["ID"],
                "StudyInstanceUID": info.get("MainDicomTags", {}).get("StudyInstanceUID"),
                "AccessionNumber": info.get("MainDicomTags", {}).get("AccessionNumber", ""),
                "StudyDate": info.get("MainDicomTags", {}).get("StudyDate", ""),
                "received": meta.get("ReceptionDate", ""),
                "status": status,
                "priority": int(meta["ptxseg-priority"]) if meta.get("ptxseg-priority", "").isdigit() else 9,
                "severity": meta.get("ptxseg-severity", ""),
                "probability": _float(meta.get("ptxseg-probability")),
                "side": meta.get("ptxseg-side", ""),
                "ratio_pct": _float(meta.get("ptxseg-ratio")),
                "qc": meta.get("ptxseg-qc", ""),
                "model": meta.get("ptxseg-model", ""),
            }
            if best is None or _key(row) < _key(best):
                best = row
        if best is not None:
            rows.append(best)
    return sorted(rows, key=_key)


def _key(row: dict[str, Any]) -> tuple:
    analysed = row["status"] == "analysed"
    probability = row["probability"] if row["probability"] == row["probability"] else -1.0  # NaN last
    return (not analysed, row["priority"], -probability, row["received"])
