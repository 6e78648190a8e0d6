"""Method settings in a recipe's distill section: keys from the configs, each used where it applies."""

from __future__ import annotations

from typing import Any

import pytest

from compress.errors import ConfigError
from compress.pipeline import parse_recipe

TEACHERS = [{"model": "resnet20", "train": {"epochs": 1}}]


def distill_section(**section: Any) -> Any:
    return parse_recipe({"teachers": TEACHERS, "distill": {"student": "resnet8", **section}}).distill


def test_section_settings_go_to_the_methods_that_take_them() -> None:
    spec = distill_section(methods=["none", "kd", "atsc"], w=3.0, temperature=2.0, train={"preset": "imagenet"})
    none, kd, atsc = (spec.config_for(name) for name in ("none", "kd", "atsc"))
    assert none.settings.to_dict() == {"label_smoothing": 0.0}
    assert kd.settings.to_dict() == {"temperature": 2.0, "ce_weight": 0.1, "kl_weight": 0.9}
    assert (atsc.w, atsc.temperature, atsc.factor) == (3.0, 2.0, 2)  # explicit w over the preset's 10
    assert spec.settings == {"w": 3.0, "factor": 2, "beta": 1.0, "temperature": 2.0}  # what the stage key records


def test_atsc_momentum_follows_the_training_unless_given() -> None:
    assert distill_section(train={"momentum": 0.5}).config_for("atsc").momentum == 0.5
    assert distill_section(train={"momentum": 0.5}, momentum=0.8).config_for("atsc").momentum == 0.8
    assert distill_section().config_for("atsc").momentum == 0.9


@pytest.mark.parametrize("section, message", [
    ({"methods": ["kd", "none"], "w": 2.0},
     r"^distill\.w: none of the methods run \(kd, none\) takes it; it is a setting of atsc$"),
    ({"methods": ["atsc", {"name": "kd-hot", "method": "kd", "w": 2.0}]},
     r"^distill\.methods\[1\]: distill setting 'w' does not apply to method 'kd'; it is a setting of atsc$"),
    ({"methods": ["kd"], "temperature": 0},
     r"^distill: distill setting 'temperature' must be a number > 0\.0, got 0\.0$"),
    ({"methods": ["simkd"], "projector": "bottlenek"}, r"^distill: unknown projector 'bottlenek'"),
])
def test_misplaced_or_bad_settings_name_their_path(section: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        distill_section(**section)


def test_adaptation_variants_are_recipe_runs() -> None:
    spec = distill_section(methods=["atsc", {"name": "atsc-frozen", "method": "atsc", "teacher_adapt": "none"},
                                    {"name": "atsc-every4", "method": "atsc", "teacher_every": 4,
                                     "pseudo_threshold": 0.95}])
    atsc, frozen, every = (spec.config_for(name) for name in ("atsc", "atsc-frozen", "atsc-every4"))
    assert (atsc.teacher_adapt, frozen.teacher_adapt, every.teacher_every, every.pseudo_threshold) == \
        ("all", "none", 4, 0.95)
    with pytest.raises(ConfigError, match=r"^distill: teacher_adapt='bn' trains no teacher weights"):
        distill_section(methods=[{"name": "bad", "method": "atsc", "teacher_adapt": "bn", "reference": True}])
