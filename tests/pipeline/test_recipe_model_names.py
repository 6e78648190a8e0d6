"""Recipes name students and teachers as the CLI does: zoo names, ``timm:NAME`` and ``torchvision:NAME``.

Parsing only (nothing trains); a ``python:`` model is refused, since a recipe never imports user code."""

from __future__ import annotations

import pytest
import yaml

from compress.errors import ConfigError, UnknownNameError
from compress.pipeline import parse_recipe

RECIPE = """
name: own-models
data: {name: fashion-mnist, train_limit: 256}
teachers:
  - {model: timm:resnet10t, train: {epochs: 1}}
  - {model: torchvision:resnet18, weights: imagenet}
distill: {student: timm:mobilenetv3_small_050, methods: [kd, atsc], train: {epochs: 1}}
"""


def parsed(text: str):
    return parse_recipe(yaml.safe_load(text), source="test")


def test_timm_and_torchvision_names_resolve() -> None:
    pytest.importorskip("timm")
    spec = parsed(RECIPE)
    assert spec.distill.student == "timm:mobilenetv3_small_050"
    assert [t.model for t in spec.teachers] == ["timm:resnet10t", "resnet18"]  # torchvision: the zoo's own name
    assert [t.weights for t in spec.teachers] == [None, "imagenet"]
    assert spec.to_dict()["distill"]["student"] == "timm:mobilenetv3_small_050"


def test_name_mistakes_name_their_recipe_path() -> None:
    pytest.importorskip("timm")
    with pytest.raises(UnknownNameError, match=r"^distill\.student: unknown timm model 'mobilenetv3_smal_100'.*"
                                                r"did you mean .*timm:mobilenetv3_small_100"):
        parsed(RECIPE.replace("timm:mobilenetv3_small_050", "timm:mobilenetv3_smal_100"))
    with pytest.raises(ConfigError, match=r"^teachers\[0\]\.model: 'timm:resnet50\.a1_in1k': give the architecture "
                                          r"as the model \(timm:resnet50\) and the pretrained tag as the weights"):
        parsed(RECIPE.replace("timm:resnet10t", "timm:resnet50.a1_in1k"))


def test_torchvision_prefix_works_without_timm_and_user_code_is_refused() -> None:
    text = RECIPE.replace("timm:resnet10t", "resnet8").replace("timm:mobilenetv3_small_050", "torchvision:mobilenet_v3_small")
    assert parsed(text).distill.student == "mobilenet_v3_small"
    with pytest.raises(ConfigError, match=r"^distill\.student: 'python:mymod:make' is a model from user code: build "
                                          r"it in Python with compress\.model"):
        parsed(text.replace("torchvision:mobilenet_v3_small", "'python:mymod:make'"))
    with pytest.raises(ConfigError, match=r"^teachers\[1\]\.model: 'resnet20' is one of compress's CIFAR models"):
        parsed(text.replace("torchvision:resnet18", "torchvision:resnet20"))
