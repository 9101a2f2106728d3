"""Write docs/config.md (every config field, from the pydantic schema) and docs/recipes/NAME.md (one page per shipped config).

    .venv/bin/python scripts/config_docs.py

tests/test_config.py checks the written pages are current.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ptxseg.config import Config, config_path, list_configs, load_config

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _type(info: dict) -> str:
    if "anyOf" in info:
        return " | ".join(_type(i) for i in info["anyOf"])
    if "enum" in info:
        return " / ".join(f"`{v}`" for v in info["enum"])
    if "const" in info:
        return f"`{info['const']}`"
    if "$ref" in info:
        return info["$ref"].split("/")[-1]
    if info.get("type") == "array":
        return f"list of {_type(info.get('items', {}))}" if info.get("items") else "list"
    return info.get("type", "any")


def config_page() -> str:
    schema = Config.model_json_schema()
    defs = schema["$defs"]
    out = [
        "# Configuration reference",
        "",
        "Generated from the schema by `scripts/config_docs.py`; `ptxseg config schema` prints the same as JSON.",
        "A config is YAML; every field has a default, `base: NAME` starts from another config, and",
        "`--set a.b=c` overrides a value on the command line (the value is parsed as YAML:",
        "`--set training.unfreeze='[[0, 0.0], [2, 1.0]]'`, `--set stages.1.size=1024`).",
        "A wrong value stops before any work with one line naming the key and what is allowed.",
        "",
    ]

    def table(title: str, props: dict, required: list, description: str = "") -> None:
        out.extend([f"## `{title}`", ""])
        if description:
            out.extend([description, ""])
        out.extend(["| field | type | default | meaning |", "|---|---|---|---|"])
        for name, info in props.items():
            default = "required" if name in required else f"`{info.get('default')}`" if "default" in info else "(see below)"
            desc = info.get("description", "").replace("|", "\\|").replace("\n", " ")
            kind = _type(info).replace("|", "\\|")
            out.append(f"| `{name}` | {kind} | {default} | {desc} |")
        out.append("")

    table("top level", schema["properties"], schema.get("required", []))
    for name, d in defs.items():
        table(name, d.get("properties", {}), d.get("required", []), d.get("description", "").split("\n")[0])
    return "\n".join(out).rstrip() + "\n"


def _per_stage(values: list) -> str:
    """One value when every stage has it, else the values joined by ' / '."""
    texts = [str(v) for v in values]
    return texts[0] if len(set(texts)) == 1 else " / ".join(texts)


def recipe_page(name: str) -> str:
    path = config_path(name)
    header = [ln[2:] if ln.startswith("# ") else ln[1:] for ln in path.read_text().splitlines() if ln.startswith("#")]
    cfg = load_config(name)
    stages = cfg.resolved_stages()
    rows = [
        (
            "model",
            f"{cfg.model.name} / {cfg.model.encoder or 'own encoder'}"
            + (f", pretrained {cfg.model.pretrained}" if cfg.model.pretrained else ""),
        ),
        ("input", " → ".join(f"{s.size}²" for s in stages) + (", fixed lung crop" if cfg.data.crop else "")),
        ("epochs", " + ".join(str(s.epochs) for s in stages)),
        (
            "batch",
            _per_stage([s.batch_size for s in stages])
            + (f" (× {cfg.training.accum_steps} accumulated)" if cfg.training.accum_steps > 1 else ""),
        ),
        (
            "optimiser",
            f"{cfg.optimizer.name}, lr "
            + _per_stage([f"{s.lr:g}" for s in stages])
            + f", weight decay {cfg.optimizer.weight_decay:g}",
        ),
        ("schedule", _per_stage([s.scheduler.name for s in stages])),
        ("loss", _per_stage([f"`{s.loss}`" for s in stages])),
        (
            "sampler",
            cfg.sampler.kind + (f" (shares {[s.positive_share for s in stages]})" if cfg.sampler.kind == "positive_share" else ""),
        ),
        ("augmentation", ", ".join(t["name"] for t in cfg.augment) or "none"),
        (
            "operating point",
            f"threshold {cfg.postprocess.threshold}, min mask {cfg.postprocess.min_mask_px} px at {cfg.postprocess.at_size}²"
            + (
                f", triplet top {cfg.postprocess.top_threshold} × {cfg.postprocess.top_min_px} px"
                if cfg.postprocess.top_threshold
                else ""
            )
            + (" (tuned on validation after training)" if cfg.postprocess.tune else " (fixed)"),
        ),
        ("TTA", ", ".join(cfg.tta)),
        ("early stopping", f"patience {cfg.training.early_stopping.patience}" if cfg.training.early_stopping.patience else "none"),
    ]
    tiny = ["data.size=64", "training.epochs=1", "training.batch_size=2"] + [f"stages.{k}.size=64" for k in range(len(cfg.stages))]
    lines = [
        f"# Recipe `{name}`",
        "",
        f"**Reproduces:** {cfg.reference}",
        "",
        *header,
        "",
        "| what | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in rows],
        "",
        "## Run it",
        "",
        "On the SIIM data (converted with `ptxseg convert`), one fold, on a GPU:",
        "",
        "```bash",
        f"ptxseg train {name} --data data/siim --fold 0 --out runs/{name}-f0",
        f"torchrun --nproc_per_node=4 -m ptxseg train {name} --data data/siim --fold 0 --out runs/{name}-f0   # 4 GPUs",
        "```",
        "",
        "A few minutes on a CPU at a tiny size (what the test suite does with every recipe, on phantoms):",
        "",
        "```bash",
        f"ptxseg train {name} --data demo/dataset --minutes 2 " + " ".join(f"--set {s}" for s in tiny),
        "```",
        "",
        "Full values: `ptxseg config show " + name + "`. The published numbers need the full SIIM data and",
        "ImageNet weights (`--set model.pretrained=imagenet` where you are online); neither is available on the",
        "machine that built ptxseg, so no SIIM score of this recipe is claimed here.",
    ]
    return "\n".join(lines) + "\n"


def pages() -> dict[Path, str]:
    out = {DOCS / "config.md": config_page()}
    for name in list_configs():
        out[DOCS / "recipes" / f"{name}.md"] = recipe_page(name)
    return out


def main() -> int:
    for path, text in pages().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(path.relative_to(DOCS.parent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
