"""``ptxseg triage``: the PACS worker on Orthanc, and ``ptxseg triage worklist`` (``docs/pacs.md``)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from ptxseg.cli import app


class _DefaultRun(TyperGroup):
    """``ptxseg triage --orthanc URL MODEL`` runs the worker; ``ptxseg triage worklist …`` lists the studies."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


triage_app = typer.Typer(
    cls=_DefaultRun,
    help="PACS triage on Orthanc: 'ptxseg triage --orthanc URL MODEL' analyses every new chest radiograph and stores "
    "SEG, SC and SR back; 'ptxseg triage worklist --orthanc URL' lists the analysed studies in triage order.",
    no_args_is_help=True,
)
app.add_typer(triage_app, name="triage")

Orthanc = Annotated[str, typer.Option("--orthanc", help="Orthanc's REST URL, e.g. http://127.0.0.1:8042.")]
Settings = Annotated[Path | None, typer.Option("--config", help="Triage settings (YAML; docs/pacs.md).")]
Credentials = Annotated[
    Path | None, typer.Option("--credentials", help="File with one line user:password (else PTXSEG_ORTHANC_USER/_PASSWORD).")
]


@triage_app.command("run", hidden=True)
def triage_run(
    model: Annotated[
        Path,
        typer.Argument(
            help="Pneumothorax model: `default` (shipped, real SIIM films), a bundle (fast path), run directory or ensemble file."
        ),
    ],
    orthanc: Orthanc,
    config: Settings = None,
    credentials: Credentials = None,
    once: Annotated[bool, typer.Option("--once", help="Process everything pending, then exit.")] = False,
) -> None:
    """Follow Orthanc's changes; analyse each new CR/DX chest radiograph; store SEG, SC, SR and metadata — not a medical device."""
    from ptxseg.pacs.config import load_settings
    from ptxseg.pacs.triage import configure_logging, run_triage

    configure_logging()
    counts = run_triage(orthanc, model, load_settings(config), once=once, credentials_file=credentials)
    typer.echo(", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "nothing new")


@triage_app.command("worklist")
def triage_worklist(
    orthanc: Orthanc,
    config: Settings = None,
    credentials: Credentials = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document, for programs.")] = False,
) -> None:
    """The analysed studies in triage order: severity, then probability, then age; with the QC verdict."""
    from ptxseg.pacs.config import load_settings
    from ptxseg.pacs.triage import list_worklist

    rows = list_worklist(orthanc, load_settings(config), credentials_file=credentials)
    if as_json:
        clean = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in rows]
        typer.echo(json.dumps({"format": "ptxseg-worklist/1", "studies": clean}, indent=2))
        return
    if not rows:
        typer.echo("no analysed studies")
        return
    typer.echo(
        f"{'#':>3}  {'priority':8}  {'severity':8}  {'prob':>5}  {'side':10}  {'ratio %':>7}  {'study date':10}  "
        f"{'accession':12}  qc / status"
    )
    for k, r in enumerate(rows, 1):
        prob = "" if math.isnan(r["probability"]) else f"{r['probability']:.3f}"
        ratio = "" if math.isnan(r["ratio_pct"]) else f"{r['ratio_pct']:.1f}"
        note = r["qc"] if r["status"] == "analysed" else r["status"]
        prio = str(r["priority"]) if r["status"] == "analysed" else "-"
        typer.echo(
            f"{k:>3}  {prio:8}  {r['severity']:8}  {prob:>5}  {r['side']:10}  {ratio:>7}  {r['StudyDate']:10}  "
            f"{r['AccessionNumber'][:12]:12}  {note}"
        )
