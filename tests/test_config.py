"""Config schema: shipped recipes validate and carry the published values; bad values are one clear error."""

from __future__ import annotations

import json

import pytest
import yaml

from ptxseg.cli import main
from ptxseg.config import Config, apply_override, list_configs, load_config, read_raw, validate
from ptxseg.errors import PtxsegError

RECIPES = {
    "unet_r34_256_bcedice",
    "unetpp_r34_256_bcedice",
    "nnunet_ds_r34_256_bcedice",
    "unet_effb0_256_fast",
    "unet_r50_1024_focal",
    "unet_effb4_1024_focal",
    "ptxsegnet_512_focal",
    "pdeseray_512_tversky_focal",
    "uefficientnet_b4_256",
    "seresnext50_progressive_512_1024",
    "siim_1st_place_1024",
}


def test_every_recipe_is_shipped_and_valid():
    assert RECIPES | {"default"} <= set(list_configs())
    for name in list_configs():
        cfg = load_config(name)
        assert cfg.name == name
        assert cfg.reference, f"{name} does not cite its work"


def test_ptxseg_table_values():
    for name in ("unet_r34_256_bcedice", "unet_effb0_256_fast", "ptxsegnet_512_focal", "unet_r50_1024_focal"):
        c = load_config(name)
        assert (c.optimizer.name, c.optimizer.lr, c.optimizer.weight_decay) == ("adam", 1e-4, 1e-5)
        assert (c.scheduler.name, c.scheduler.factor, c.scheduler.patience) == ("plateau", 0.5, 5)
        assert (c.training.early_stopping.patience, c.training.early_stopping.min_delta) == (15, 0.001)
        assert c.sampler.kind == "weighted"
        assert [t["name"] for t in c.augment] == ["HorizontalFlip", "RandomRotate90", "Affine", "RandomBrightnessContrast"]
    assert load_config("unet_r34_256_bcedice").training.batch_size == 8
    assert load_config("unet_effb0_256_fast").training.batch_size == 4
    p = load_config("ptxsegnet_512_focal")
    assert (p.training.batch_size, p.training.epochs, p.data.size, p.loss["name"]) == (4, 15, 512, "focal")
    assert load_config("unet_r50_1024_focal").loss["name"] == "focal"  # the base's BCE+Dice sum is replaced, not merged


def test_other_recipes_values():
    s = load_config("siim_1st_place_1024")
    assert s.loss == {"name": "sum", "terms": [[3, "bce"], [1, "dice"], [4, "focal"]]}
    assert (s.training.batch_size, s.training.clip_grad, s.training.top_k, s.optimizer.weight_decay) == (2, 0.1, 3, 5e-6)
    stages = s.resolved_stages()
    assert [st.positive_share for st in stages] == [0.8, 0.6, 0.4]
    assert [st.lr for st in stages] == [1e-4, 1e-5, 1e-5]
    assert [st.scheduler.name for st in stages] == ["plateau", "cosine", "cosine"]
    assert stages[0].scheduler.factor == 0.1 and stages[0].scheduler.patience == 2 and stages[1].scheduler.t_max == 8
    assert "hflip" in s.tta and s.postprocess.top_threshold is not None
    p = load_config("seresnext50_progressive_512_1024")
    assert [st.size for st in p.resolved_stages()] == [512, 1024]
    assert p.loss["name"] == "curriculum" and p.scheduler.name == "cyclic" and p.training.snapshots
    assert (p.postprocess.threshold, p.postprocess.min_mask_px, p.postprocess.tune) == (0.55, 2000, False)
    u = load_config("uefficientnet_b4_256")
    crop = u.data.crop
    assert (crop.top, crop.bottom, crop.left, crop.right, crop.pad_px) == (0.08, 0.78, 0.10, 0.85, 20)
    assert u.loss["terms"][0][1] == {"name": "wbce", "pos_weight": 3.51} and u.scheduler.name == "cosine"
    d = load_config("pdeseray_512_tversky_focal")
    assert (d.optimizer.lr, d.training.epochs, d.postprocess.min_mask_px, d.postprocess.at_size) == (5e-4, 50, 3500, 512)


def test_overrides():
    cfg = load_config("siim_1st_place_1024", ["data.size=64", "stages.1.epochs=2", "model.encoder=resnet18", "training.amp=bf16"])
    assert cfg.data.size == 64 and cfg.stages[1].epochs == 2 and cfg.model.encoder == "resnet18" and cfg.training.amp == "bf16"
    raw: dict = {}
    apply_override(raw, "optimizer.lr=3e-4")
    assert validate(raw).optimizer.lr == 3e-4
    with pytest.raises(PtxsegError, match="stages.7: no list item"):
        load_config("siim_1st_place_1024", ["stages.7.size=64"])
    with pytest.raises(PtxsegError, match="expected key=value"):
        load_config("default", ["data.size"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimizer.name=adamx", "optimizer.name: unknown optimiser 'adamx'; choose one of adam, adamw, sgd"),
        ("sampler.kind=balanced", "sampler.kind: unknown sampler 'balanced'; choose one of positive_share, shuffle, weighted"),
        ("sampler={kind: shuffle, stratum_weights: {adult: 5}}", "stratum_weights needs kind: weighted"),
        ("data.size=100", "data.size: must be a multiple of 32"),
        ("model.name=segformer", "model.name: unknown architecture 'segformer'; choose one of"),
        ("model.nme=unet", "model.nme: unknown key"),
        ("loss=diec", "loss: unknown loss 'diec'; choose one of"),
        ("augment=[{name: HorizontalFlop}]", "augment.HorizontalFlop: not an albumentations transform; did you mean HorizontalFlip"),
        ("training.unfreeze=[[0, 2.0]]", "training.unfreeze"),
        ("sampler.positive_share=1.5", "sampler.positive_share"),
        ("data.crop={top: 0.8, bottom: 0.2}", "crop needs top < bottom"),
        ("postprocess.cls_threshold=0.5", "postprocess.cls_threshold: needs a classifier head"),
    ],
)
def test_bad_values_name_the_key(override, message):
    with pytest.raises(PtxsegError, match="default.yaml") as err:
        load_config("default", [override])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_base_chain_and_files(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("base: unet_r34_256_bcedice\nname: mine\ntraining: {epochs: 3}\n")
    cfg = load_config(f)
    assert cfg.training.epochs == 3 and cfg.training.batch_size == 8 and cfg.optimizer.lr == 1e-4
    assert "base" not in read_raw(f)
    (tmp_path / "bad.yaml").write_text("model: [unclosed\n")
    with pytest.raises(PtxsegError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(PtxsegError, match="loops"):
        load_config(tmp_path / "loop.yaml")
    with pytest.raises(PtxsegError, match="no such config"):
        load_config("nonexistent_recipe")


def test_config_cli(capsys):
    assert main(["config", "show", "siim_1st_place_1024", "--set", "data.size=512"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["data"]["size"] == 512 and shown["training"]["clip_grad"] == 0.1
    assert Config.model_validate(shown).name == "siim_1st_place_1024"  # what show prints loads back
    assert main(["config", "show", "default", "--raw"]) == 0
    assert "# ptxseg default" in capsys.readouterr().out
    assert main(["config", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "optimizer" in schema["properties"] and schema["$defs"]["OptimizerConfig"]["properties"]["lr"]["description"]
    assert main(["config", "list"]) == 0
    assert "siim_1st_place_1024" in capsys.readouterr().out
    assert main(["config", "show", "default", "--set", "optimizer.name=adamx"]) == 2
    assert "optimizer.name" in capsys.readouterr().err


def test_generated_docs_are_current():
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "config_docs.py"
    spec = importlib.util.spec_from_file_location("config_docs", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for path, text in module.pages().items():
        assert path.is_file() and path.read_text() == text, f"{path} is stale: run scripts/config_docs.py"
