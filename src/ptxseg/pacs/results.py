"""The findings of one radiograph as a few short strings for the source instance's Orthanc metadata (the SEG, SC
and SR themselves: :mod:`ptxseg.tasks.dicom_results`)."""

from __future__ import annotations

from typing import Any

#: triage priority by the largest severity: 1 is read first
PRIORITY = {"severe": 1, "moderate": 2, "mild": 3, "none": 4}
#: the metadata ptxseg writes on a source instance (Orthanc "UserMetadata" names; docs/pacs.md)
METADATA = (
    "ptxseg-status",
    "ptxseg-probability",
    "ptxseg-side",
    "ptxseg-ratio",
    "ptxseg-severity",
    "ptxseg-priority",
    "ptxseg-qc",
    "ptxseg-model",
)


def orthanc_user_metadata(first_index: int = 4101) -> dict[str, int]:
    """The ``"UserMetadata"`` entries Orthanc's configuration must declare for ptxseg (name → index ≥ 1024)."""
    return {name: first_index + k for k, name in enumerate(METADATA)}


def findings(doc: dict[str, Any]) -> dict[str, str]:
    """The source instance's metadata for an analysed radiograph (every value a short string)."""
    sides = [s for s in ("right", "left") if (doc[s].get("area_px") or 0) > 0]
    if not sides and doc["pneumothorax"]["present"]:
        sides = ["unassigned"]
    ratios = [doc[s]["ratio_pct"] for s in ("right", "left") if doc[s].get("ratio_pct") is not None]
    severity = doc.get("max_severity") or "unknown"
    qc = doc["qc"]
    verdict = qc["verdict"] if qc.get("triage_eligible") is not False else f"{qc['verdict']}; not fit for triage"
    flags = [*qc.get("warnings", []), *(qc.get("flags") or [])]
    return {
        "ptxseg-status": "analysed",
        "ptxseg-probability": f"{doc['pneumothorax']['probability']:.4f}",
        "ptxseg-side": "+".join(sides) if sides else "none",
        "ptxseg-ratio": f"{max(ratios):.1f}" if ratios else "",
        "ptxseg-severity": severity,
        "ptxseg-priority": str(PRIORITY.get(severity, 3 if doc["pneumothorax"]["present"] else 4)),
        "ptxseg-qc": verdict + (f": {', '.join(flags)}" if flags else ""),
        "ptxseg-model": doc["model"]["version"],
    }
