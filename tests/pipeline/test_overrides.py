"""``compress run RECIPE --set KEY=VALUE``: any key changed from the command line, checked as in the file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from compress.cli import main
from compress.errors import ConfigError, UsageError
from compress.pipeline import load_recipe
from compress.pipeline.overrides import Override

RECIPE: dict[str, Any] = {
    "name": "t",
    "data": {"name": "fashion-mnist", "train_limit": 256},
    "teachers": [{"model": "resnet8", "train": {"epochs": 1}}],
    "distill": {"student": "resnet8", "methods": ["kd", "atsc"], "deploy": "atsc", "train": {"epochs": 2}},
    "export": {"onnx": {}, "int8": True},
    "validate": {"gates": {"onnx": {"min_agreement": 99.9}}},
}


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(RECIPE))
    return path


def test_a_set_changes_one_key_and_keeps_the_file_s_others(recipe: Path) -> None:
    spec = load_recipe(recipe, ["distill.train.epochs=4"])
    assert spec.distill.train.config.epochs == 4
    assert spec.teachers[0].train is not None and spec.teachers[0].train.config.epochs == 1
    assert spec.distill.methods == ("kd", "atsc") and spec.data.train_limit == 256
    assert load_recipe(recipe).distill.train.config.epochs == 2  # the file itself is unchanged


def test_values_are_yaml_lists_mappings_and_null(recipe: Path) -> None:
    spec = load_recipe(recipe, ["validate.batch_sizes=[1,8]", "export.onnx={exporter: torchscript, opset: 19}",
                                "data.train_limit=null", "distill.methods=[none, atsc]", "distill.w=2.5"])
    assert spec.validation.batch_sizes == (1, 8)
    assert (spec.export.of("onnx").exporter, spec.export.of("onnx").opset) == ("torchscript", 19)
    assert spec.data.train_limit is None
    assert spec.distill.methods == ("none", "atsc") and spec.distill.config_for("atsc").w == 2.5


def test_list_items_missing_sections_and_the_last_set_wins(recipe: Path) -> None:
    spec = load_recipe(recipe, ["teachers[0].train.epochs=3", "report.title=Nightly", "export.tensorrt.precision=int8",
                                "distill.train.epochs=5", "distill.train.epochs=6", "distill.methods[0]=none"])
    assert spec.teachers[0].train is not None and spec.teachers[0].train.config.epochs == 3
    assert spec.report.title == "Nightly"  # the file has no report section: it is made
    assert spec.export.of("tensorrt").precision == "int8"
    assert spec.distill.train.config.epochs == 6
    assert spec.distill.methods == ("none", "atsc")  # one item of a list


def test_the_run_records_its_overrides(recipe: Path) -> None:
    spec = load_recipe(recipe, ["distill.train.epochs=4"])
    assert spec.overrides == ("distill.train.epochs=4",)
    assert spec.to_dict()["overrides"] == ["distill.train.epochs=4"]
    assert spec.to_dict()["distill"]["train"]["epochs"] == 4
    assert "overrides" not in load_recipe(recipe).to_dict()  # records of runs without --set are as they were


@pytest.mark.parametrize("given, message", [
    ("distill.train.epoch=4", "--set distill.train.epoch=4: distill.train.epoch: unknown key (did you mean 'epochs'?)"),
    ("distil.student=resnet8", "--set distil.student=resnet8: distil: unknown key (did you mean 'distill'?)"),
    ("distill.tempreature=2", "--set distill.tempreature=2: distill.tempreature: unknown key "
                              "(did you mean 'temperature'?)"),
    ("teachers[0].trian.epochs=2", "--set teachers[0].trian.epochs=2: teachers[0].trian: unknown key "
                                   "(did you mean 'train'?)"),
])
def test_an_unknown_key_names_its_path_and_the_closest_key(recipe: Path, given: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        load_recipe(recipe, [given])


@pytest.mark.parametrize("given, message", [
    ("distill.train.epochs=four", "--set distill.train.epochs=four: distill.train.epochs: expected whole number, "
                                  "got text 'four'"),
    ("distill.train.epochs=0", "--set distill.train.epochs=0: distill.train: epochs must be at least 1 and at most 100000, got 0"),
    ("validate.batch_sizes=8", "--set validate.batch_sizes=8: validate.batch_sizes: expected a list of whole numbers, "
                               "got a whole number 8"),
    ("distill.factor=0", "--set distill.factor=0: distill: distill setting 'factor' must be a whole number >= 1, "
                         "got 0"),
    ("distill.student=resnet9", "--set distill.student=resnet9: distill.student: unknown model 'resnet9'"),
])
def test_an_invalid_value_is_refused_as_in_the_file(recipe: Path, given: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}"):
        load_recipe(recipe, [given])


@pytest.mark.parametrize("given, message", [
    ("distill.train.epochs", "--set 'distill.train.epochs': expected KEY=VALUE, e.g. --set distill.train.epochs=4"),
    ("=4", "--set '=4': expected KEY=VALUE"),
    ("distill..epochs=3", "--set 'distill..epochs=3': 'distill..epochs' is not a key path"),
    ("teachers[x].model=a", "'teachers[x].model' is not a key path"),
    ("validate.batch_sizes=[1,8", "--set validate.batch_sizes: not valid YAML (expected ',' or ']'"),
    ("teachers[3].train.epochs=2", "--set teachers[3].train.epochs: 'teachers' has 1 item(s), the last is teachers[0]"),
    ("teachers.train.epochs=2", "--set teachers.train.epochs: 'teachers' is a list: name an item, e.g. "
                                "teachers[0].train"),
    ("distill[0].student=a", "--set distill[0].student: 'distill' is a mapping, not a list: drop [0]"),
    ("export.int8.calibration=64", "--set export.int8.calibration: 'export.int8' is true, not a mapping: set "
                                   "'export.int8' itself, e.g. --set export.int8={key: value}"),
])
def test_a_malformed_set_says_what_is_wrong(recipe: Path, given: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_recipe(recipe, [given])


def test_a_mistake_in_the_file_is_still_the_file_s(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**RECIPE, "distill": {**RECIPE["distill"], "train": {"epochs": 2, "lr": "fast"}}}))
    with pytest.raises(ConfigError, match=f"^{re.escape(str(path))}: distill.train.lr: expected number"):
        load_recipe(path, ["distill.train.epochs=3"])


def test_the_overriding_set_is_blamed_when_several_are_given(recipe: Path) -> None:
    with pytest.raises(ConfigError, match=r"^--set data.val_limit=0: data: --val-limit must be at least 1"):
        load_recipe(recipe, ["distill.train.epochs=3", "data.val_limit=0"])


def test_covers_matches_whole_path_segments() -> None:
    override = Override.parse("distill.train.epochs=3")
    assert override.steps == ("distill", "train", "epochs") and override.value == 3
    assert override.covers("distill.train") and override.covers("distill.train.epochs")
    assert not override.covers("distill.train.epochs_x") and not override.covers("distill.training")
    assert Override.parse("teachers[0][1].x=a").steps == ("teachers", 0, 1, "x")


def test_the_command_line_reports_a_bad_set_in_one_line(recipe: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["run", str(recipe), "--set", "distill.train.epochs=2", "--set", "distill.train.epoch=4"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err == "error: --set distill.train.epoch=4: distill.train.epoch: unknown key (did you mean 'epochs'?)"


# ---------------------------------------------------------------- issue 23: a --set value meets a recipe file's limits

@pytest.mark.parametrize("given, message", [
    ("validate.batch_sizes=" + "[" * 5000 + "1" + "]" * 5000,
     r"^--set validate\.batch_sizes: values nested deeper than 32 levels: a recipe needs a handful$"),
    ("distill.train.epochs=" + "9" * 5001, r"^--set distill\.train\.epochs: a whole number of 5001 digits: no recipe "
                                           r"value needs more than 30$"),
    ("name=" + "x" * 120_000, r"^--set 'name': a value of 120,000 characters, more than the 16,384 a setting needs; "
                              r"put long values in the recipe file$"),
    ("validate.duration_s=.nan", r"^--set validate\.duration_s=\.nan: validate\.duration_s: expected number, got a "
                                 r"number nan$"),
    ("distill.train.lr=-.inf", r"^--set distill\.train\.lr=-\.inf: distill\.train\.lr: expected number, got a number "
                               r"-inf$"),
    ("export.onnx={exporter: dynamo, exporter: torchscript}",
     r"^--set export\.onnx: key 'exporter' appears twice in one mapping"),
], ids=["5000 brackets", "5001 digits", "120 KB string", "nan", "-inf", "duplicate key"])
def test_a_set_value_meets_the_limits_of_a_recipe_value(recipe: Path, given: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load_recipe(recipe, [given])
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 300  # one line, the value not echoed whole


def test_a_set_without_a_value_is_a_usage_error(recipe: Path) -> None:
    with pytest.raises(UsageError, match=r"^--set 'distill\.train\.epochs': expected KEY=VALUE") as caught:
        load_recipe(recipe, ["distill.train.epochs"])
    assert caught.value.exit_code == 2
    with pytest.raises(UsageError, match=r"^--set 'x{30}.+ characters left out"):  # a huge KEY is cut short
        load_recipe(recipe, ["x" * 100_000])


def test_a_set_without_a_value_exits_2_on_the_command_line(recipe: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["run", str(recipe), "--set", "distill.train.epochs"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == ("error: --set 'distill.train.epochs': expected KEY=VALUE, e.g. --set "
                                               "distill.train.epochs=4")
