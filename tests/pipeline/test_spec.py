"""Recipes: every file in pipelines/ parses, and every mistake names its path in the recipe."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from compress.errors import ConfigError
from compress.pipeline import STAGES, load_recipe, parse_recipe
from compress.pipeline.runner import stage_index
from compress.pipeline.spec import DEPLOY_BEST_VAL
from compress.validate.gates import GateSpec

PIPELINES = Path(__file__).resolve().parents[2] / "pipelines"
RECIPES = sorted(PIPELINES.glob("*.yaml"))

BASE: dict[str, Any] = {
    "name": "t",
    "data": {"name": "fashion-mnist", "train_limit": 256},
    "teachers": [{"model": "resnet8", "train": {"epochs": 1}}],
    "distill": {"student": "resnet8", "methods": ["kd", "atsc"], "deploy": "atsc", "train": {"epochs": 1}},
    "export": {"onnx": {}, "int8": {"calibration": 32}},
    "validate": {"gates": {"onnx": {"min_agreement": 99.9}}},
}


def recipe(**changes: Any) -> dict[str, Any]:
    """BASE with dotted-path changes: recipe(**{"distill.train.epochs": 2})."""
    data = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return data


def test_the_expected_recipes_exist() -> None:
    names = {p.stem for p in RECIPES}
    assert {"fashion_mnist_ci", "fashion_mnist", "fashion_mnist_gpu", "cifar100_resnet32x4_resnet8x4",
            "imagenet_resnet50_mobilenetv2", "fashion_mnist_multi_teacher"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_recipe_parses(path: Path) -> None:
    spec = load_recipe(path)
    assert spec.name == path.stem  # the run folder is named after the file
    assert spec.distill.deploy in (*spec.distill.methods, DEPLOY_BEST_VAL)
    if path.stem == "fashion_mnist_teacher":  # makes the shipped teacher (run with --until teacher), exports nothing
        assert len(spec.teachers) == 1 and spec.teachers[0].train is not None and spec.export.of("onnx") is None
        return
    assert spec.export.of("onnx") is not None and spec.export.of("int8") is not None
    assert spec.validation.parsed_gates is not None


def test_ci_recipe_gates_are_the_issue_s() -> None:
    spec = load_recipe(PIPELINES / "fashion_mnist_ci.yaml")
    gates = spec.validation.parsed_gates
    assert isinstance(gates, dict)
    assert gates["onnx"] == GateSpec(min_agreement=99.9, min_speedup=1.0)
    assert gates["int8"].thresholds["max_top1_drop"] == 1.0
    assert gates["student"].thresholds["min_top1"] > 50
    assert spec.export.of("tensorrt") is None and spec.validated_stages == ("student", "onnx", "int8")


def test_paper_recipes_take_their_preset() -> None:
    cifar = load_recipe(PIPELINES / "cifar100_resnet32x4_resnet8x4.yaml")
    assert cifar.distill.train.config.epochs == 240 and cifar.distill.train.config.milestones == (150, 180, 210)
    assert cifar.distill.train.batch_size == 64 and cifar.distill.config_for("atsc").w == 1.0
    imagenet = load_recipe(PIPELINES / "imagenet_resnet50_mobilenetv2.yaml")
    assert imagenet.teachers[0].weights == "imagenet" and imagenet.teachers[0].train is None
    assert imagenet.distill.config_for("atsc").w == 10.0 and imagenet.export.of("tensorrt") is not None
    multi = load_recipe(PIPELINES / "fashion_mnist_multi_teacher.yaml")
    assert [t.model for t in multi.teachers] == ["resnet20", "wrn_16_2"]


def test_a_valid_recipe_resolves_defaults_and_presets() -> None:
    spec = parse_recipe(recipe(**{"distill.train": {"preset": "fashion-mnist", "batch_size": 128}, "distill.w": 2.0,
                                  "teachers.0.train.weight_decay": "5e-4"}))
    assert spec.distill.train.config.lr == pytest.approx(0.1)  # the preset's 0.05 at 64, scaled to 128
    assert spec.distill.config_for("atsc").w == 2.0  # explicit keys beat the preset's
    assert spec.distill.config_for("atsc").factor == 2  # from the preset
    # YAML 1.1 reads 5e-4 (no dot) as text; a number field accepts it
    assert spec.teachers[0].train is not None and spec.teachers[0].train.config.weight_decay == 5e-4


@pytest.mark.parametrize("changes, message", [
    ({"distill.trian": {}}, r"^distill\.trian: unknown key \(did you mean 'train'\?\)"),
    ({"teachers.0.train.epoch": 3}, r"^teachers\[0\]\.train\.epoch: unknown key \(did you mean 'epochs'\?\)"),
    ({"export.int8.calibraton": 10}, r"^export\.int8\.calibraton: unknown key \(did you mean 'calibration'\?\)"),
    ({"validate.gates": {"onnx": {"min_agreemnt": 99}}}, r"validate\.gates\.onnx\.min_agreemnt: unknown gate \(did you mean 'min_agreement'\?\)"),
    ({"valdate": {}}, r"^valdate: unknown key \(did you mean 'validate'\?\)"),
    ({"distill.method": "kd"}, r"^distill\.method: unknown key \(did you mean 'methods'\?\)"),
    ({"data.val_limt": 5}, r"^data\.val_limt: unknown key \(did you mean 'val_limit'\?\)"),
])
def test_unknown_keys_name_their_path_and_the_closest_key(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_recipe(recipe(**changes))


@pytest.mark.parametrize("changes, message", [
    ({"distill.train.epochs": "two"}, r"^distill\.train\.epochs: expected whole number, got text 'two'"),
    ({"teachers.0.train.lr": [0.1]}, r"^teachers\[0\]\.train\.lr: expected number, got a list"),
    ({"validate.batch_sizes": [1, "x"]}, r"^validate\.batch_sizes\[1\]: expected whole number, got text 'x'"),
    ({"report.png": "yes"}, r"^report\.png: expected true/false, got text 'yes'"),
    ({"export.tensorrt": {"batch": [1, 8]}}, r"^export\.tensorrt\.batch: expected a list of 3 whole numbers, got 2 values"),
    ({"data.train_limit": 1.5}, r"^data\.train_limit: expected whole number or null, got a number 1\.5"),
    ({"teachers.0.train.epochs": True}, r"^teachers\[0\]\.train\.epochs: expected whole number, got true"),
    ({"distill": ["resnet8"]}, r"^distill: expected a mapping"),
    ({"teachers": {"model": "resnet8"}}, r"^teachers: expected a list"),
])
def test_wrong_types_name_their_path_and_what_is_expected(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_recipe(recipe(**changes))


@pytest.mark.parametrize("changes, message", [
    ({"distill.student": "resnt8"}, r"^distill\.student: unknown model 'resnt8': did you mean 'resnet8'\?"),
    ({"distill.methods": ["kd", "atcs"]}, r"^distill\.methods\[1\]: unknown method 'atcs': did you mean 'atsc'\?"),
    ({"distill.deploy": "simkd"}, r"^distill\.deploy: 'simkd' is not among the methods run"),
    ({"teachers.0.train.epochs": 0}, r"^teachers\[0\]\.train: epochs must be at least 1 and at most 100000, got 0"),
    ({"distill.w": -1}, r"^distill: distill setting 'w' must be a number >= 0"),
    ({"teachers.0": {"model": "resnet8"}}, r"^teachers\[0\]: teacher 'resnet8' has neither 'train' nor 'weights'"),
    ({"teachers": []}, r"^teachers: method\(s\) kd, atsc need at least one teacher"),
    ({"export.onnx": False}, r"^export: int8, .* and tensorrt are built from the ONNX model"),
    ({"export.int8.method": "avg"}, r"^export\.int8: method must be one of minmax, entropy, percentile"),
    ({"validate.gates": {"tensorrt": {"min_agreement": 99}}}, r"^validate\.gates\.tensorrt: not a stage this recipe validates"),
    ({"data.name": "fashion-mnst"}, r"^data\.name: unknown dataset 'fashion-mnst': did you mean 'fashion-mnist'\?"),
    ({"data.batch_size": 64}, r"^data\.batch_size: the batch size belongs to each training"),
    ({"name": "a/b"}, r"^name: 'a/b' becomes a folder name"),
])
def test_bad_values_name_their_path(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_recipe(recipe(**changes))


def test_a_recipe_file_error_names_the_file_and_the_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(recipe(**{"distill.train.lr": "fast"})))
    with pytest.raises(ConfigError, match=r"bad\.yaml: distill\.train\.lr: expected number, got text 'fast'"):
        load_recipe(path)
    path.write_text("name: x\ndata: {name: fashion-mnist\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: line \d+: not valid YAML"):
        load_recipe(path)
    with pytest.raises(ConfigError, match=r"recipe '.*missing\.yaml' does not exist"):
        load_recipe(tmp_path / "missing.yaml")


def test_yaml_cannot_build_python_objects(tmp_path: Path) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_recipe(path)


def test_stage_names_for_from_and_until() -> None:
    assert stage_index("export_onnx", "--from") == 2 and stage_index("Report", "--until") == len(STAGES) - 1
    with pytest.raises(ConfigError, match=r"--from 'exprt-onnx' is not a stage: did you mean 'export-onnx'\?"):
        stage_index("exprt-onnx", "--from")


def test_methods_may_be_named_variants_with_their_own_settings() -> None:
    raw = {"data": {"name": "fashion-mnist", "labels_per_class": 100},
           "teachers": [{"model": "resnet20", "train": {"epochs": 1}}],
           "distill": {"student": "resnet8", "w": 2.0, "deploy": "atsc-reference",
                       "methods": ["none", {"name": "none-ls", "method": "none", "label_smoothing": 0.1},
                                   {"name": "atsc-reference", "method": "atsc", "reference": True}, "atsc"]}}
    spec = parse_recipe(raw)
    assert spec.distill.methods == ("none", "none-ls", "atsc-reference", "atsc")
    assert spec.data.labels_per_class == 100 and spec.distill.deploy == "atsc-reference"
    ls, ref, atsc = (spec.distill.config_for(n) for n in ("none-ls", "atsc-reference", "atsc"))
    assert (ls.method, ls.label_smoothing) == ("none", 0.1)
    assert (ref.method, ref.reference, ref.teacher_ce, ref.w) == ("atsc", True, 0.0, 2.0)  # reference guards, shared w
    assert (atsc.reference, atsc.teacher_ce) == (False, 1.0)


@pytest.mark.parametrize("variant, message", [
    ({"method": "atsc"}, r"distill.methods\[0\].name: missing"),
    ({"name": "x", "method": "atsk"}, r"distill.methods\[0\].method: .*did you mean 'atsc'"),
    ({"name": "x/y", "method": "atsc"}, "becomes a folder name"),
    ({"name": "x", "method": "atsc", "refrence": True}, r"did you mean 'reference'"),
])
def test_bad_variants_name_their_path(variant: dict, message: str) -> None:
    raw = {"teachers": [{"model": "resnet20", "train": {"epochs": 1}}],
           "distill": {"student": "resnet8", "methods": [variant]}}
    with pytest.raises(ConfigError, match=message):
        parse_recipe(raw)


def test_holdout_and_shift_reach_the_data_and_stage_inputs_only_when_set() -> None:
    plain = parse_recipe(recipe())
    assert not {"holdout_per_class", "shift", "shift_seed"} & set(plain.data_dict())  # old runs stay up to date
    assert {"strict_data", "label_seed"} <= set(plain.data_dict())
    spec = parse_recipe(recipe(**{"data.holdout_per_class": 20, "data.shift": "camera"}))
    assert (spec.data.holdout_per_class, spec.data.shift) == (20, "camera")
    assert spec.data_dict()["holdout_per_class"] == 20 and spec.data_dict()["shift"] == "camera"
    assert "shift_seed" not in spec.data_dict()  # its default, whatever the shift
    assert parse_recipe(recipe(**{"data.shift_seed": 3})).data_dict()["shift_seed"] == 3


@pytest.mark.parametrize("changes, message", [
    ({"data.shift": "fog"}, r"data: unknown shift 'fog': choose one of camera"),
    ({"data.holdout_per_class": 0}, r"data: --holdout-per-class must be at least 1"),
])
def test_a_bad_holdout_or_shift_in_a_recipe_names_its_path(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_recipe(recipe(**changes))


def test_deploy_best_val_needs_a_held_out_validation_split() -> None:
    from compress.pipeline.spec import parse_recipe

    recipe: dict[str, Any] = {"data": {"name": "fashion-mnist"}, "teachers": [{"model": "resnet8", "train": {"epochs": 1}}],
              "distill": {"student": "resnet8", "methods": ["none", "kd"], "deploy": "best-val"}}
    with pytest.raises(ConfigError, match="distill.deploy: best-val chooses the deployed run on a validation split "
                                          "held out of the training images: set data.holdout_per_class"):
        parse_recipe(recipe)
    recipe["data"]["holdout_per_class"] = 20
    assert parse_recipe(recipe).distill.deploy == "best-val"
