"""One registry helper for every pluggable part: duplicates refused, unknown names listed, and the config schema's
allowed names taken from the registries."""

from __future__ import annotations

import pytest
import torch

from ptxseg.config import Config, load_config
from ptxseg.data.samplers import SAMPLERS
from ptxseg.errors import PtxsegError
from ptxseg.infer.tta import TTA_TRANSFORMS
from ptxseg.losses import LOSSES
from ptxseg.models import MODELS
from ptxseg.optim import OPTIMIZERS, SCHEDULERS
from ptxseg.registry import Registry

ALL = {"model": MODELS, "loss": LOSSES, "optimizer": OPTIMIZERS, "scheduler": SCHEDULERS, "sampler": SAMPLERS, "tta": TTA_TRANSFORMS}


def test_a_registry_refuses_duplicates_and_lists_choices():
    reg: Registry[int] = Registry("widget", "widget.name")
    reg.register("a", 1)

    @reg.register("b")
    def b() -> int:
        return 2

    assert reg.names() == ["a", "b"] and reg["b"] is b and "a" in reg and "c" not in reg
    with pytest.raises(ValueError, match="widget 'a' registered twice"):
        reg.register("a", 3)
    assert reg["a"] == 1  # the first registration stands
    with pytest.raises(PtxsegError, match=r"widget.name: unknown widget 'c'; choose one of a, b"):
        reg["c"]


@pytest.mark.parametrize("kind", sorted(ALL))
def test_every_registry_refuses_a_duplicate(kind):
    reg = ALL[kind]
    name = reg.names()[0]
    before = reg[name]
    with pytest.raises(ValueError, match="registered twice"):
        reg.register(name, object())
    assert reg[name] is before


def test_the_config_schema_takes_its_names_from_the_registries():
    schema = Config.model_json_schema()
    defs = schema["$defs"]
    assert defs["ModelConfig"]["properties"]["name"]["enum"] == MODELS.names()
    assert defs["SamplerConfig"]["properties"]["kind"]["enum"] == SAMPLERS.names()
    assert defs["OptimizerConfig"]["properties"]["name"]["enum"] == OPTIMIZERS.names()
    assert defs["SchedulerConfig"]["properties"]["name"]["enum"] == SCHEDULERS.names()
    assert schema["properties"]["tta"]["items"]["enum"] == TTA_TRANSFORMS.names()
    # a part registered later is accepted by the config without touching the schema, and an unknown one is refused
    OPTIMIZERS.register("test_rmsprop", lambda params, c, lr: torch.optim.RMSprop(params, lr=lr))
    try:
        assert load_config("default", ["optimizer.name=test_rmsprop"]).optimizer.name == "test_rmsprop"
    finally:
        del OPTIMIZERS._parts["test_rmsprop"]
    with pytest.raises(PtxsegError, match="unknown optimiser 'test_rmsprop'; choose one of adam, adamw, sgd"):
        load_config("default", ["optimizer.name=test_rmsprop"])
