"""``ptxseg train`` and ``ptxseg config``: run a recipe, inspect recipes and the schema."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.padding import Padding
from rich.table import Table

from ptxseg.cli import app
from ptxseg.errors import PtxsegError
from ptxseg.progress import EpochBars, console, err_console

config_app = typer.Typer(help="Shipped training configs and their schema.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("list")
def config_list() -> int:
    """List the shipped configs with the work each reproduces."""
    from ptxseg.config import list_configs, load_config

    rows = []
    for name in list_configs():
        cfg = load_config(name)
        sizes = "→".join(str(s.size) for s in cfg.resolved_stages())
        rows.append((name, f"{cfg.model.name}/{cfg.model.encoder or '-'}", sizes, cfg.reference))
    if console.width >= 120:
        table = Table(title="shipped configs (ptxseg config show NAME)")
        table.add_column("name", no_wrap=True)
        table.add_column("model", no_wrap=True)
        table.add_column("size", justify="right", no_wrap=True)
        table.add_column("reference")
        for row in rows:
            table.add_row(*row)
        console.print(table)
    else:  # a narrow terminal: one block per config, so that no column is cut off
        console.print("shipped configs (ptxseg config show NAME)\n")
        for name, model, sizes, reference in rows:
            console.print(f"[bold]{name}[/bold]  {model}  {sizes} px", highlight=False)
            console.print(Padding(reference, (0, 0, 0, 4), expand=False), highlight=False, soft_wrap=False)
    return 0


@config_app.command("show")
def config_show(
    name: Annotated[str, typer.Argument(help="A shipped config name or a YAML file.")] = "default",
    overrides: Annotated[list[str] | None, typer.Option("--set", help="Override a value: key.sub=value (YAML value).")] = None,
    raw: Annotated[
        bool, typer.Option("--raw", help="Print the file as written (with its comments) instead of every resolved field.")
    ] = False,
) -> int:
    """Print a config: every field, resolved and validated (or the file itself with --raw)."""
    from ptxseg.config import config_path, dump_config, load_config

    if raw:
        print(config_path(name).read_text(), end="")
        return 0
    print(dump_config(load_config(name, overrides or [])), end="")
    return 0


@config_app.command("schema")
def config_schema() -> int:
    """Print the JSON schema of a config (every field, its type, default and description)."""
    from ptxseg.config import Config

    print(json.dumps(Config.model_json_schema(), indent=2))
    return 0


def epoch_line(r: dict) -> str:
    """One epoch's validation as the selection sees it: the Dice the best epoch is chosen by comes first (at the
    epoch's tuned point, or at the configured one), the other after it, then positives and empty films; "best"
    marks the epoch whose first number is the highest so far."""
    tuned = r.get("select_by") == "tuned"
    first, other = ("val_dice_tuned", "val_dice") if tuned else ("val_dice", "val_dice_tuned")
    names = {"val_dice_tuned": "tuned point", "val_dice": "configured point"}
    text = f"val Dice {r[first]:.4f}"
    if other in r:
        text += f" ({names[first]}; {r[other]:.4f} at the {names[other]})"
    text += f" · positives {r['val_dice_pos']:.3f}"
    if r.get("val_empty_correct") == r.get("val_empty_correct") and r.get("val_empty_correct") is not None:  # not NaN
        text += f" · empty correct {r['val_empty_correct']:.3f}"
    return text + (" · best" if r["best"] else "")


@app.command("train")
def train_command(
    config: Annotated[
        str | None, typer.Argument(help="Config: a shipped name (ptxseg config list) or a YAML file. Default: 'default'.")
    ] = None,
    data: Annotated[Path | None, typer.Option("--data", help="Canonical dataset folder (from ptxseg convert or synth).")] = None,
    fold: Annotated[int | None, typer.Option("--fold", help="Validation fold (default: the config's data.fold).")] = None,
    minutes: Annotated[
        float | None, typer.Option("--minutes", help="Wall-clock budget: stop after the step in progress once spent.")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Run directory (default runs/NAME-foldK-TIME).")] = None,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="Override a config value: key.sub=value (YAML value); repeatable.")
    ] = None,
    resume: Annotated[Path | None, typer.Option("--resume", help="Continue an interrupted run from its directory.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars: log lines only.")] = False,
    mlflow: Annotated[
        bool, typer.Option("--mlflow", help="Also log to a local MLflow store in RUN_DIR/mlruns (needs mlflow).")
    ] = False,
    tensorboard: Annotated[bool, typer.Option("--tensorboard", help="Also write TensorBoard scalars to RUN_DIR/tensorboard.")] = False,
) -> int:
    """Train a segmentation model on a dataset and write a self-contained run directory."""
    from ptxseg.config import load_config
    from ptxseg.io.atomic import prepare_output_dir
    from ptxseg.train.engine import TrainingInterrupted, train
    from ptxseg.train.rundir import (
        check_dataset,
        check_new_run,
        default_run_dir,
        resume_target,
    )
    from ptxseg.train.tracking import MlflowTracker, TensorboardTracker

    if resume is not None:
        if config is not None or overrides:
            raise PtxsegError("--resume", "a resumed run keeps its own config; do not pass CONFIG or --set")
        target = resume_target(resume)
        cfg = load_config(target.config)
        data = data or target.dataset
        fold = target.fold if fold is None else fold
        out = resume
        check_dataset(data)
    else:
        if data is None:
            raise PtxsegError("--data", "a dataset folder is required (ptxseg convert or ptxseg synth make one)")
        cfg = load_config(config, overrides or [])
        fold = cfg.data.fold if fold is None else fold
        out = out or default_run_dir(cfg.name, fold)
        check_new_run(out, data)
    if int(os.environ.get("RANK", "0")) == 0:
        prepare_output_dir(out, "run directory")
    trackers = ([MlflowTracker()] if mlflow else []) + ([TensorboardTracker()] if tensorboard else [])

    bars = EpochBars(quiet=quiet)

    def on_epoch(r: dict) -> None:
        bars.close()  # the epoch's finished bar stays above its line
        head = f"stage {r['stage']} epoch {r['epoch'] + 1}: loss {r['train_loss']:.4f} " if quiet else "  "
        tail = f" · {r['images_per_s']:.1f} img/s" if quiet else f" · val BCE {r['val_loss']:.4f} · lr {r['lr']:.2e}"
        err_console.print(head + epoch_line(r) + tail, highlight=False)

    if int(os.environ.get("RANK", "0")) == 0:
        err_console.print(f"ptxseg train {cfg.name} on {data} (fold {fold}) → {out}", highlight=False)
    try:
        with bars:
            callbacks = {"trackers": trackers, "on_epoch": on_epoch, "on_batch": bars}
            result = train(cfg, data, out, fold=fold, minutes=minutes, resume=resume is not None, **callbacks)
    except TrainingInterrupted as exc:
        err_console.print(f"ptxseg: interrupted ({exc}); continue with: ptxseg train --resume {out}", highlight=False)
        raise typer.Exit(143) from None
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    console.print(result_table(cfg, result))
    return 0


def result_table(cfg, result) -> Table:
    """The closing table of ``ptxseg train``: the chosen epoch's Dice, the operating point, the run directory."""
    table = Table(
        title=f"ptxseg train {cfg.name}: {result.stop_reason} after {result.epochs_run} epochs, {result.seconds / 60:.1f} min"
    )
    table.add_column("what")
    table.add_column("value", justify="right")
    if result.select_by == "tuned":
        table.add_row(
            "chosen epoch: validation SIIM Dice at its tuned point", f"{result.select_dice:.4f} (epoch {result.best_epoch + 1})"
        )
    table.add_row(
        "chosen epoch: validation SIIM Dice at the configured point", f"{result.best_dice:.4f} (epoch {result.best_epoch + 1})"
    )
    op = result.operating_point
    table.add_row(
        "operating point" + (" (tuned on validation)" if cfg.postprocess.tune else " (fixed by the config)"),
        f"threshold {op['threshold']}, min mask {op['min_mask_px']} px at {op['at_size']}²",
    )
    table.add_row("validation SIIM Dice at that operating point", f"{result.tuned_dice:.4f}")
    table.add_row("run directory", str(result.run_dir))
    return table
