"""``ptxseg models``: the architectures and encoders of the registry, with their size and cost."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from ptxseg.cli import app
from ptxseg.progress import console, progress_bar

# torch, timm and smp are imported inside the command: the other commands start without them.


def _profile(name: str, encoder: str | None, size: int, macs: bool) -> dict:
    from ptxseg.models import create_model, model_spec
    from ptxseg.models.profile import count_macs, count_parameters

    model = create_model(name, encoder=encoder if model_spec(name).takes_encoder else None)
    return {
        "name": name,
        "encoder": model.encoder or "(own)",
        "params_m": round(count_parameters(model) / 1e6, 2),
        "gmacs": round(count_macs(model, size) / 1e9, 1) if macs else None,
        "description": model_spec(name).description,
    }


@app.command("models")
def models(
    size: Annotated[int, typer.Option(help="Input side for the MAC count (a multiple of 32).")] = 512,
    encoder: Annotated[str | None, typer.Option(help="Encoder for the architectures that take one (default: each one's).")] = None,
    no_macs: Annotated[bool, typer.Option("--no-macs", help="Skip counting multiply-accumulates (faster).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    shipped: Annotated[
        bool, typer.Option("--shipped", help="List the trained models that ship inside ptxseg (usable by name: predict default …).")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> int:
    """List architectures (parameters, multiply-accumulates at SIZE²) and encoders, or the shipped models."""
    if shipped:
        return _list_shipped(as_json)
    from ptxseg.models import ENCODERS, list_models

    names = list_models()
    rows = list(progress_bar("profiling", quiet or as_json)((_profile(n, encoder, size, not no_macs) for n in names), len(names)))
    if as_json:
        print(json.dumps({"size": size, "architectures": rows, "encoders": list(ENCODERS)}, indent=2))
        return 0
    table = Table(title=f"ptxseg architectures (random init, 1 input channel, MACs at {size}²)")
    for col, justify in (("name", "left"), ("encoder", "left"), ("params (M)", "right"), (f"GMACs @{size}²", "right")):
        table.add_column(col, justify=justify)
    for r in rows:
        macs = "-" if r["gmacs"] is None else f"{r['gmacs']:.1f}"
        table.add_row(r["name"], r["encoder"], f"{r['params_m']:.2f}", macs)
    console.print(table)
    console.print("encoders: " + ", ".join(ENCODERS) + " (any smp encoder or timm model as tu-<name> also works)")
    return 0


def _list_shipped(as_json: bool) -> int:
    from ptxseg.artifacts.shipped import SHIPPED, WITHHELD, shipped_path

    rows = []
    for name, what in SHIPPED.items():
        folder = shipped_path(name)
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) if folder else 0
        row = {"name": name, "what": what, "installed": folder is not None, "path": str(folder or ""), "mb": round(size / 1e6, 1)}
        if folder is None:
            row["why_not"] = WITHHELD.get(name, "not in this installation")
        rows.append(row)
    if as_json:
        print(json.dumps({"shipped": rows}, indent=2))
        return 0
    table = Table(title="models shipped inside ptxseg (use the name as MODEL)")
    for col in ("name", "what", "size (MB)", "path"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["what"], f"{r['mb']:.1f}" if r["installed"] else "not shipped", r["path"] or r["why_not"])
    console.print(table)
    return 0
