"""A new method is its class, its config dataclass and its registration: the factory, the CLI options,
the recipe keys and the records follow from them with no other file touched."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Iterator

import pytest
import torch

import compress.cli
from compress.cli import main
from compress.distill import METHODS, DistillConfig, Supervised, build_method, settings_table
from compress.distill.settings import MethodConfig, setting
from compress.errors import ConfigError
from compress.models import ClassifierModel
from compress.pipeline import parse_recipe

from distill_helpers import batch, tiny


@dataclass
class ScaledConfig(MethodConfig):
    gain: float = setting(2.0, "multiplies the cross-entropy", low=0.0, above=True)
    label_smoothing: float = setting(0.0, "label smoothing of the cross-entropy", low=0.0, high=0.999)


class Scaled(Supervised):
    """The student alone with ``gain * CE``: a method as small as one can be."""

    summary = "test method: gain x cross-entropy"
    config_class = ScaledConfig

    def __init__(self, student: ClassifierModel, teachers: list[ClassifierModel], config: ScaledConfig) -> None:
        super().__init__(student, config.label_smoothing)
        self.gain = config.gain

    @classmethod
    def from_config(cls, config: ScaledConfig, student: ClassifierModel, teachers: list[ClassifierModel],
                    image_size: int | tuple[int, int] | None = None) -> "Scaled":
        return cls(student, teachers, config)

    def forward(self, images: torch.Tensor, labels: torch.Tensor):  # type: ignore[no-untyped-def]
        out = super().forward(images, labels)
        out.loss = self.gain * out.loss
        return out


@pytest.fixture
def scaled() -> Iterator[None]:
    """``Scaled`` registered as 'scaled' for one test; the registry and the CLI are restored afterwards."""
    entries, canonical = dict(METHODS._entries), dict(METHODS._canonical)
    METHODS.register("scaled")(Scaled)
    _rebuild_cli()  # the distill command's options are derived when the CLI is built
    try:
        yield
    finally:
        METHODS._entries, METHODS._canonical = entries, canonical
        _rebuild_cli()


def _rebuild_cli() -> None:
    """A fresh typer app with every command module re-imported (each registers its commands on the app)."""
    for name in ("app", "options", "listing", "training", "deployment", "run"):
        importlib.reload(importlib.import_module(f"compress.cli.{name}"))
    importlib.reload(compress.cli)


def test_factory_and_settings_come_from_the_registration(scaled: None) -> None:
    method = build_method(DistillConfig("scaled", gain=3.0), tiny("resnet8"), [])
    x, y = batch()
    plain = build_method(DistillConfig("none"), tiny("resnet8"), [])
    assert isinstance(method, Scaled) and method.name == "scaled"
    torch.testing.assert_close(method(x, y).loss, 3.0 * plain(x, y).loss)
    info = settings_table()["gain"]
    assert info.methods == ("scaled",) and info.help == "scaled: multiplies the cross-entropy. Default: 2.0."
    assert settings_table()["label_smoothing"].methods == ("none", "scaled")
    with pytest.raises(ConfigError, match=r"^distill setting 'gain' must be a number > 0.0, got 0.0$"):
        DistillConfig("scaled", gain=0.0)
    with pytest.raises(ConfigError, match="'gain' does not apply to method 'kd'; it is a setting of scaled"):
        DistillConfig("kd", gain=3.0)
    # A method added later records only its own settings after the shared layout: the others' records keep theirs.
    record = DistillConfig("scaled", gain=3.0).to_dict()
    assert list(record)[-1] == "gain" and record["method"] == "scaled" and "gain" not in DistillConfig("kd").to_dict()


def test_recipe_keys_come_from_the_config(scaled: None) -> None:
    spec = parse_recipe({"distill": {"student": "resnet8", "gain": 4.0,
                                     "methods": ["scaled", {"name": "scaled-ls", "method": "scaled",
                                                            "label_smoothing": 0.1}]}})
    assert (spec.distill.config_for("scaled").gain, spec.distill.config_for("scaled-ls").gain) == (4.0, 4.0)
    assert spec.distill.config_for("scaled-ls").label_smoothing == 0.1
    with pytest.raises(ConfigError, match=r"^distill\.methods\[0\]\.gian: unknown key \(did you mean 'gain'\?\)"):
        parse_recipe({"distill": {"student": "resnet8", "methods": [{"name": "s", "method": "scaled", "gian": 1.0}]}})


def test_cli_options_come_from_the_config(scaled: None, capsys: pytest.CaptureFixture[str]) -> None:
    compress.cli.main(["distill", "--help"])
    assert "--gain" in capsys.readouterr().out


def test_without_the_registration_nothing_knows_the_method() -> None:
    assert "gain" not in settings_table() and "scaled" not in METHODS
    with pytest.raises(SystemExit):
        main(["distill", "--student", "resnet8", "--method", "none", "--gain", "3", "--out", "unused"])
