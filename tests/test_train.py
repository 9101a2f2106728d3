"""The training engine on phantoms: every shipped recipe, stages, freezing, budget, early stopping, checkpoints."""

from __future__ import annotations

import json
import shutil
import sys
import types

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ptxseg.artifacts.checkpoint import load_model, load_state, read_model_card, save_state, save_weights
from ptxseg.config import list_configs, load_config, read_raw
from ptxseg.data.manifest import read_dataset_info, read_manifest
from ptxseg.data.preprocess import Preprocessing, crop_box
from ptxseg.data.split import fold_split
from ptxseg.errors import PtxsegError
from ptxseg.io.images import read_mask
from ptxseg.losses import auto_pos_weight
from ptxseg.models import create_model
from ptxseg.synth.dataset import synth_dataset
from ptxseg.train.data import SegmentationDataset, make_loader
from ptxseg.train.engine import train
from ptxseg.train.freeze import encoder_blocks, encoder_of, set_encoder_trainable, trainable_fraction
from ptxseg.train.tracking import MlflowTracker

from .conftest import model_card

TINY = ["data.size=64", "training.batch_size=2", "training.val_batch_size=4", "data.workers=0", "model.pretrained=null"]


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    """24 phantoms at 64² (canonical layout), no folds.csv yet."""
    root = tmp_path_factory.mktemp("phantoms") / "ds"
    synth_dataset(root, 24, size=64, seed=3, positive_fraction=0.4)
    return root


def _tiny(name: str, extra: list[str] = ()) -> list[str]:
    raw = read_raw(name)
    sets = list(TINY)
    if raw.get("sampler", {}).get("stratum_weights"):  # phantoms have no strata (tests/test_lung_data.py covers them)
        sets.append("sampler.stratum_weights={}")
    for k, _ in enumerate(raw.get("stages", [])):
        sets += [f"stages.{k}.size=64", f"stages.{k}.epochs=1", f"stages.{k}.batch_size=2"]
    return sets + ["training.epochs=1", *extra]


@pytest.mark.slow
@pytest.mark.parametrize("name", list_configs())
def test_every_shipped_config_trains_one_step(name, phantoms, tmp_path):
    cfg = load_config(name, _tiny(name))
    result = train(cfg, phantoms, tmp_path / "run", minutes=0)  # budget spent: stop after the first step
    assert result.stop_reason == "budget" and result.epochs_run == 1
    record = result.history[0]
    assert record["partial"] and record["val_images"] == len(fold_split(phantoms, cfg.data.fold).val_ids)
    assert np.isfinite(record["train_loss"]) and record["train_loss"] > 0
    model, card = load_model(tmp_path / "run")
    # the one step trained: the saved weights are not the seeded initialisation any more
    torch.manual_seed(cfg.training.seed)
    init = create_model(cfg.model.name, encoder=cfg.model.encoder, aux_classifier=cfg.model.aux_classifier, **cfg.model.kwargs)
    changed = [k for k, v in init.state_dict().items() if v.is_floating_point() and not torch.equal(v, model.state_dict()[k])]
    assert changed, "no weight moved in the training step"
    assert card.model.name == cfg.model.name and card.preprocessing.size == 64 and card.recipe == name
    with torch.no_grad():
        assert model(torch.zeros(1, 1, 64, 64)).shape == (1, 1, 64, 64)


@pytest.mark.slow
def test_run_directory_contents(phantoms, tmp_path):
    cfg = load_config("default", [*TINY, "model.encoder=resnet18", "training.epochs=2"])
    result = train(cfg, phantoms, tmp_path / "run")
    run = tmp_path / "run"
    for name in ("config.yaml", "env.json", "run.json", "metrics.jsonl", "train.log", "curves.png", "best.safetensors", "best.json"):
        assert (run / name).is_file(), name
    assert load_config(run / "config.yaml").model.encoder == "resnet18"  # the resolved config reloads
    env = json.loads((run / "env.json").read_text())
    assert env["torch"] == torch.__version__ and "commit" in env["git"]
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [0, 1] and result.stop_reason == "completed"
    card = read_model_card(run / "best.safetensors")
    assert card.training_data.fingerprint == fold_split(phantoms, 0).fingerprint
    # the default recipe tunes its operating point, so checkpoints are chosen at each epoch's own tuned point
    assert all(r["val_select"] == r["val_dice_tuned"] >= r["val_dice"] for r in lines)  # the grid holds the fixed point
    assert card.metrics["val_select"] == max(r["val_select"] for r in lines)
    validation = card.metrics["validation_at_operating_point"]  # numbers at the tuned point, with bootstrap intervals
    assert validation["mean_dice"] == pytest.approx(card.metrics["val_dice_tuned"])
    lo, hi = validation["ci95"]["mean_dice"]
    assert lo <= validation["mean_dice"] <= hi
    assert (phantoms / "folds.csv").is_file()  # created on the fly
    assert "stage 0: size 64" in (run / "train.log").read_text()


@pytest.mark.slow
def test_progressive_stages_start_from_previous_best(phantoms, tmp_path):
    raw_sets = [
        *TINY,
        "model.encoder=resnet18",
        "stages=[{size: 64, epochs: 1, unfreeze: [[0, 0.0]]}, {size: 96, epochs: 1, unfreeze: [[0, 0.5]]}]",
    ]
    cfg = load_config("default", raw_sets)
    result = train(cfg, phantoms, tmp_path / "run")
    sizes = [(r["stage"], r["size"]) for r in result.history]
    assert sizes == [(0, 64), (1, 96)]
    n_blocks = len(encoder_blocks(encoder_of(create_model("unet", encoder="resnet18"))))
    assert result.history[0]["frozen_blocks"] == n_blocks and result.history[1]["frozen_blocks"] == n_blocks // 2
    assert read_model_card(tmp_path / "run" / "best.safetensors").preprocessing.size == 96
    # stage 0 kept the whole encoder frozen: its weights are the seeded initialisation
    torch.manual_seed(cfg.training.seed)
    init = create_model("unet", encoder="resnet18").state_dict()
    stage0 = load_file(str(tmp_path / "run" / "checkpoints" / "stage0_best.safetensors"))
    enc = [k for k in init if k.startswith("net.model.encoder.")]
    assert enc and all(torch.equal(init[k], stage0[k]) for k in enc)
    dec = [k for k in init if k.startswith("net.model.decoder.") and k.endswith("weight")]
    assert any(not torch.equal(init[k], stage0[k]) for k in dec)
    # stage 1 started from stage 0's best: its shallow frozen half is unchanged from stage 0
    final = load_file(str(tmp_path / "run" / "best.safetensors"))
    conv1 = "net.model.encoder.conv1.weight"
    assert torch.equal(final[conv1], stage0[conv1])
    assert not torch.equal(final["net.model.encoder.layer4.1.conv2.weight"], stage0["net.model.encoder.layer4.1.conv2.weight"])


@pytest.mark.slow
def test_an_inherited_curriculum_and_share_schedule_run_on_the_run_wide_epoch(phantoms, tmp_path, monkeypatch):
    from ptxseg.data.samplers import PositiveShareSampler
    from ptxseg.losses import CurriculumLoss

    seen: dict[str, list] = {"loss": [], "share": []}
    set_epoch = CurriculumLoss.set_epoch
    monkeypatch.setattr(
        CurriculumLoss, "set_epoch", lambda self, e: (seen["loss"].append((len(self.starts), e)), set_epoch(self, e))[1]
    )
    init = PositiveShareSampler.__init__

    def record_share(self, labels, share, *a, **k):
        seen["share"].append(share)
        init(self, labels, share, *a, **k)

    monkeypatch.setattr(PositiveShareSampler, "__init__", record_share)
    cfg = load_config(
        "default",
        [
            *TINY,
            "model.encoder=resnet18",
            "loss={name: curriculum, stages: [[0, bce], [2, dice], [3, lovasz_symmetric]]}",
            "sampler={kind: positive_share, positive_share: [0.8, 0.7, 0.6, 0.5]}",
            # stage 2 inherits both; stage 3 brings its own two-step curriculum and share, counted from its start
            "stages=[{size: 64, epochs: 2}, {size: 64, epochs: 1}, {size: 64, epochs: 2, loss: {name: curriculum, "
            "stages: [[0, dice], [1, bce]]}, positive_share: [0.9, 0.4]}]",
        ],
    )
    train(cfg, phantoms, tmp_path / "run")
    assert seen["loss"] == [(3, 0), (3, 1), (3, 2), (2, 0), (2, 1)]  # was (3, 0) again at the start of stage 2
    assert seen["share"] == [[0.8, 0.7, 0.6, 0.5], [0.6, 0.5], [0.9, 0.4]]
    # the 3-stage published recipe reaches symmetric Lovász in its 1024 stage
    stages = load_config("seresnext50_progressive_512_1024").resolved_stages()
    assert [(s.first_epoch, s.loss_epoch_offset) for s in stages] == [(0, 0), (12, 12)]


def test_freezing_helpers():
    model = create_model("unet", encoder="resnet18")
    blocks = encoder_blocks(encoder_of(model))
    assert blocks[0] is model.net.model.encoder.conv1 and blocks[-1] is model.net.model.encoder.layer4[1]
    frozen = set_encoder_trainable(model, 0.25)
    trainable = [all(p.requires_grad for p in b.parameters()) for b in blocks]
    assert frozen == len(blocks) - sum(trainable) and trainable[-1] and not trainable[0]
    assert trainable == sorted(trainable)  # the deepest blocks unfreeze first
    assert all(p.requires_grad for p in model.net.model.decoder.parameters())
    assert [trainable_fraction(e, 0, [(0, 0.0), (2, 0.5), (4, 1.0)]) for e in range(6)] == [0, 0, 0.5, 0.5, 1, 1]
    assert [trainable_fraction(e, 2) for e in range(4)] == [0, 0, 1, 1]
    with pytest.raises(PtxsegError, match="no separable encoder"):
        encoder_of(torch.nn.Conv2d(1, 1, 3))


@pytest.mark.slow
def test_budget_early_stopping_topk_snapshots(phantoms, tmp_path):
    cfg = load_config(
        "default",
        [
            *TINY,
            "model.encoder=resnet18",
            "training.epochs=6",
            "scheduler={name: cyclic, t_0: 1}",
            "training.snapshots=true",
            "training.top_k=2",
            "training.early_stopping={patience: 2, min_delta: 1.0}",  # no Dice beats a positive first one by 1.0
        ],
    )
    result = train(cfg, phantoms, tmp_path / "run")
    assert result.stop_reason == "early_stopping" and result.epochs_run == 3
    ck = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("*.safetensors"))
    assert sum("snapshot" in n for n in ck) == 3  # one per one-epoch cycle
    assert sum("_top_" in n for n in ck) == 2


@pytest.mark.slow
def test_the_engine_trains_with_bf16_channels_last_accumulation_and_clipping_set(phantoms, tmp_path):
    # what each option does is checked in tests/test_train_epoch.py; this is the wiring through a real run
    sets = [*TINY, "model.encoder=resnet18", "training.amp=bf16", "training.channels_last=true", "training.accum_steps=2"]
    cfg = load_config("default", [*sets, "training.clip_grad=0.5", "training.epochs=1", "scheduler={name: onecycle}"])
    result = train(cfg, phantoms, tmp_path / "run")
    assert result.epochs_run == 1 and np.isfinite(result.history[0]["train_loss"])
    with pytest.raises(PtxsegError, match="fp16 needs a CUDA device"):
        train(load_config("default", [*TINY, "training.amp=fp16"]), phantoms, tmp_path / "run2")


def test_fold_split_excludes_test_and_checks_fold(phantoms, tmp_path):
    ds = tmp_path / "ds"
    shutil.copytree(phantoms, ds)
    (ds / "folds.csv").unlink(missing_ok=True)
    manifest = read_manifest(ds)
    test_ids = set(manifest["id"].iloc[:4])
    manifest.loc[manifest["id"].isin(test_ids), "split"] = "test"
    manifest.to_csv(ds / "manifest.csv", index=False)
    split = fold_split(ds, 1, folds=4)
    assert (ds / "folds.csv").is_file()
    assert not test_ids & (set(split.train_ids) | set(split.val_ids))
    assert len(split.train_ids) + len(split.val_ids) == 20 and not set(split.train_ids) & set(split.val_ids)
    masks = [read_mask(ds / "masks" / f"{i}.png") for i in split.train_ids]
    assert split.auto_pos_weight() == pytest.approx(auto_pos_weight(masks))
    with pytest.raises(PtxsegError, match="--fold: must be in 0..3"):
        fold_split(ds, 4)


def test_dataset_augmentation_is_per_sample_deterministic(phantoms):
    cfg = load_config("pdeseray_512_tversky_focal", ["data.size=64"])
    ids = fold_split(phantoms, 0).train_ids[:6]
    pp = Preprocessing(stored_size=read_dataset_info(phantoms).size, size=64)
    ds = SegmentationDataset(phantoms, ids, pp, augment=cfg.augment, train=True, seed=5)
    ds.set_epoch(2)
    a = [ds[i][0] for i in range(6)]
    loaded = [x for batch, _ in make_loader(ds, 3, workers=2) for x in batch]  # other processes, other order of calls
    assert all(torch.equal(x, y) for x, y in zip(a, loaded, strict=True))
    ds.set_epoch(3)
    assert not all(torch.equal(x, ds[i][0]) for i, x in enumerate(a))
    val = SegmentationDataset(phantoms, ids, pp)
    x, y = val[0]
    assert x.shape == (1, 64, 64) and y.dtype == torch.float32 and set(y.unique().tolist()) <= {0.0, 1.0}
    assert x.min() == pytest.approx(-1.0) and x.max() == pytest.approx(1.0)  # min-max then (x - 0.5) / 0.5


def test_lung_crop_box():
    cfg = load_config("uefficientnet_b4_256")
    assert crop_box((1024, 1024), cfg.data.crop) == (82 - 20, 799 + 20, 102 - 20, 870 + 20)
    assert crop_box((256, 256), cfg.data.crop) == (20 - 5, 200 + 5, 26 - 5, 218 + 5)


def test_checkpoint_files(tmp_path):
    model = create_model("unet", encoder="resnet18")
    path = save_weights(tmp_path / "m", model, model_card())
    loaded, card = load_model(path)
    assert card.preprocessing.size == 64 and card == read_model_card(path)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True))
    (tmp_path / "m.pt").write_bytes(b"pickle")
    with pytest.raises(PtxsegError, match="pickled checkpoints are not loaded"):
        load_model(tmp_path / "m.pt")
    (tmp_path / "m.json").write_text(model_card(encoder="resnet34").to_json())
    with pytest.raises(PtxsegError, match="weights do not fit unet/resnet34"):
        load_model(path)
    opt = torch.optim.Adam(model.parameters())
    model(torch.rand(1, 1, 64, 64)).mean().backward()
    opt.step()
    save_state(tmp_path / "state", {"opt": opt.state_dict(), "rng": torch.get_rng_state(), "misc": (1, None, float("inf"))})
    back = load_state(tmp_path / "state")
    assert back["misc"] == (1, None, float("inf")) and torch.equal(back["rng"], torch.get_rng_state())
    assert torch.equal(back["opt"]["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert len(list((tmp_path / "state").glob("state-*.safetensors"))) == 1


@pytest.mark.slow
def test_mlflow_tracking(phantoms, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(PtxsegError, match="mlflow is not installed"):
        MlflowTracker()
    calls: list[tuple] = []

    def recorder(name: str):
        return lambda *a, **k: calls.append((name, a, k))

    names = ("set_tracking_uri", "set_experiment", "start_run", "log_params", "log_metrics", "log_artifact", "end_run")
    fake = types.SimpleNamespace(**{n: recorder(n) for n in names})
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    cfg = load_config("default", [*TINY, "model.encoder=resnet18", "training.epochs=1"])
    train(cfg, phantoms, tmp_path / "run", trackers=[MlflowTracker()])
    names = [c[0] for c in calls]
    assert names[:3] == ["set_tracking_uri", "set_experiment", "start_run"] and names[-1] == "end_run"
    params = next(c[1][0] for c in calls if c[0] == "log_params")
    assert params["model.encoder"] == "resnet18"
    metrics = next(c[1][0] for c in calls if c[0] == "log_metrics")
    assert "val_dice" in metrics and "train_loss" in metrics
    assert any(c[0] == "log_artifact" and c[1][0].endswith("best.json") for c in calls)


def test_positive_share_needs_positives(phantoms, tmp_path):
    ds = tmp_path / "neg"
    shutil.copytree(phantoms, ds)
    manifest = read_manifest(ds)
    manifest["positive"] = 0
    manifest.to_csv(ds / "manifest.csv", index=False)
    (ds / "folds.csv").unlink(missing_ok=True)  # folds are re-made from the relabelled manifest
    with pytest.raises(PtxsegError, match="positive_share needs positive training images"):
        train(load_config("default", TINY), ds, tmp_path / "run")


def test_progress_goes_through_the_callbacks_and_the_engine_draws_nothing(phantoms, tmp_path, capfd, monkeypatch):
    import io

    from rich.console import Console

    import ptxseg.progress as progress

    cfg = load_config("default", [*TINY, "model.encoder=resnet18", "training.epochs=2"])
    events, records = [], []
    result = train(cfg, phantoms, tmp_path / "run", on_epoch=records.append, on_batch=events.append)
    assert capfd.readouterr().err == ""  # no bar, no line of its own on stderr
    per_epoch = {e: [ev for ev in events if ev.epoch == e] for e in (0, 1)}
    for e, evs in per_epoch.items():
        assert [ev.batch for ev in evs] == list(range(1, evs[0].batches + 1))  # 1-based, every batch, in order
        assert all(ev.stage == 0 and ev.epochs == 2 and np.isfinite(ev.loss) for ev in evs)
        assert evs[-1].loss == pytest.approx(result.history[e]["train_loss"])  # the running mean ends at the record's
    assert [r["epoch"] for r in records] == [0, 1]

    # the CLI's bars, drawn from those events: one bar per epoch, ending at its last batch and loss
    out = io.StringIO()
    monkeypatch.setattr(progress, "err_console", Console(file=out, width=120, force_terminal=False))
    with progress.EpochBars() as bars:
        for ev in events:
            bars(ev)
    text = out.getvalue()
    n = per_epoch[0][0].batches
    assert "stage 0 epoch 1/2" in text and "stage 0 epoch 2/2" in text and f"{n}/{n}" in text
    assert f"loss {per_epoch[1][-1].loss:.4f}" in text
    quiet = io.StringIO()
    monkeypatch.setattr(progress, "err_console", Console(file=quiet, force_terminal=False))
    with progress.EpochBars(quiet=True) as bars:
        for ev in events:
            bars(ev)
    assert quiet.getvalue() == ""
