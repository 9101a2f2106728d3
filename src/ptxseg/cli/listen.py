"""``ptxseg listen``: a DICOM node (C-STORE in; SEG, SC and SR out by C-STORE or STOW-RS) — docs/dicom-node.md."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ptxseg.cli import app


@app.command("listen")
def listen_command(
    model: Annotated[
        Path,
        typer.Argument(
            help="Pneumothorax model: `default` (shipped, real SIIM films), a bundle (fast path), run directory or ensemble file."
        ),
    ],
    config: Annotated[Path | None, typer.Option("--config", help="Node settings (YAML; docs/dicom-node.md).")] = None,
    ae_title: Annotated[str | None, typer.Option("--ae-title", metavar="AET", help="This node's AE title [default: PTXSEG].")] = None,
    host: Annotated[str | None, typer.Option("--host", help="Address to listen on [default: 127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option("--port", help="DICOM port [default: 11112].")] = None,
    dest: Annotated[
        list[str] | None,
        typer.Option("--dest", metavar="AET@HOST:PORT", help="A C-STORE destination AET@HOST:PORT for the results; repeatable."),
    ] = None,
    stow: Annotated[
        list[str] | None,
        typer.Option(
            "--stow", metavar="URL", help="A STOW-RS destination (DICOMweb base URL; PTXSEG_STOW_USER/_PASSWORD); repeatable."
        ),
    ] = None,
    spool: Annotated[Path | None, typer.Option("--spool", help="Spool folder [default: ptxseg-spool].")] = None,
    allow_aet: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-aet", metavar="AET", help="A calling AE title to accept; repeatable (none: any caller on loopback only)."
        ),
    ] = None,
) -> None:
    """Receive radiographs by C-STORE; analyse each CR/DX chest film; send SEG, SC and SR on — not a medical device."""
    from ptxseg.io.settings import read_settings, validate_settings
    from ptxseg.node.config import NodeSettings, parse_dest
    from ptxseg.node.listen import configure_logging, run_listen

    settings = read_settings(config, NodeSettings, "node settings")
    raw = settings.model_dump(exclude_unset=True)
    given = {"ae_title": ae_title, "host": host, "port": port, "spool": spool, "allow_aet": allow_aet}
    raw |= {k: v for k, v in given.items() if v is not None}
    extra = [parse_dest(d).model_dump() for d in dest or []] + [{"kind": "stow", "url": u} for u in stow or []]
    raw["destinations"] = [d.model_dump() for d in settings.destinations] + extra
    settings = validate_settings(raw, NodeSettings, "options")
    configure_logging()
    counts = run_listen(model, settings)
    typer.echo("instances: " + (", ".join(f"{k} {v}" for k, v in sorted(counts["instances"].items())) or "none"))
