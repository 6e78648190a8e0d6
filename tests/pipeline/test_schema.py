"""`compress schema`: the recipe's JSON Schema and docs/recipes.md, generated from the config classes and
kept in step with the parser."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from compress.cli import main
from compress.distill.config import settings_table
from compress.errors import ConfigError
from compress.export.backends import BACKENDS
from compress.pipeline import parse_recipe
from compress.pipeline.overrides import apply_overrides, parse_overrides
from compress.pipeline.schema import key_rows, describe_type, field_docs, recipe_markdown, recipe_schema, type_schema
from compress.validate.gates import GATES

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "recipes.md"
REGENERATE = "compress schema --markdown > docs/recipes.md"

# Every method runs, so that every method setting is one the recipe may set.
FULL: dict[str, Any] = {
    "name": "t",
    "teachers": [{"model": "resnet8", "train": {"epochs": 1}}],
    "distill": {"student": "resnet8", "methods": ["none", "kd", "simkd", "atsc"], "train": {"epochs": 2}},
    "export": {"onnx": {}, "int8": {}, "tensorrt": {}},
    "validate": {"gates": {"min_agreement": 99.9}},
}


def parsed(*sets: str) -> Any:
    return parse_recipe(apply_overrides(copy.deepcopy(FULL), parse_overrides(list(sets))))


def printed(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    main(args)
    return capsys.readouterr().out


def test_docs_recipes_md_is_what_the_command_prints(capsys: pytest.CaptureFixture[str]) -> None:
    assert DOCS.exists(), f"docs/recipes.md is missing: generate it with `{REGENERATE}`"
    assert DOCS.read_text() == printed(["schema", "--markdown"], capsys), (
        f"docs/recipes.md is stale (the recipe keys changed): regenerate it with `{REGENERATE}`")


def test_the_command_prints_the_schema_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    schema = json.loads(printed(["schema"], capsys))
    assert schema == recipe_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema" and schema["required"] == ["distill"]


def test_the_schema_is_generated_from_the_tables() -> None:
    props = recipe_schema()["properties"]
    assert list(props["export"]["properties"]) == list(BACKENDS)
    assert props["export"]["dependentRequired"] == {"int8": ["onnx"], "tensorrt": ["onnx"], "openvino": ["onnx"],
                                                    "openvino_int8": ["onnx", "int8"]}
    gates = props["validate"]["properties"]["gates"]["anyOf"][0]["properties"]
    assert list(gates) == [*GATES, "batch_size", "threads"]
    assert gates["min_agreement"] | {"description": ""} == {"description": "", "type": "number", "minimum": 0,
                                                            "maximum": 100}
    distill = props["distill"]["properties"]
    assert set(settings_table()) < set(distill)
    assert distill["factor"] == {"description": "atsc, simkd: projector bottleneck factor r (C_t / r channels).",
                                 "type": "integer", "minimum": 1, "default": 2}
    assert distill["stability"]["enum"] == ["error", "warn", "off"]
    assert distill["bn_mode"]["enum"] == ["train", "frozen", None] and distill["bn_mode"]["default"] is None
    assert distill["temperature"]["exclusiveMinimum"] == 0.0
    assert "default" not in distill["momentum"] and "distill.train.momentum" in distill["momentum"]["description"]
    train = distill["train"]["properties"]
    assert train["epochs"] == {"type": "integer", "default": 10}
    assert train["milestones"] == {"type": "array", "items": {"type": "integer"}, "default": []}
    tensorrt = props["export"]["properties"]["tensorrt"]["anyOf"][1]["properties"]
    assert tensorrt["batch"]["default"] == [1, 8, 32] and tensorrt["batch"]["minItems"] == 3
    assert tensorrt["precision"]["description"] == "fp32 | fp16 | int8"  # the field's own comment


def test_every_key_with_a_default_is_one_the_parser_takes_with_that_value() -> None:
    """The schema lists no key the parser does not know, and its defaults are values the parser accepts."""
    schema = recipe_schema()
    rows = [(path, prop) for path, prop, _ in key_rows(schema, "") if "default" in prop]
    assert len(rows) > 60
    # a teacher is a zoo model or a checkpoint: neither can be null while the other is unset
    skipped = {"teachers[i].model", "teachers[i].checkpoint", "teachers[i].train", "teachers"}
    for path, prop in rows:
        if path in skipped:
            continue
        key = path.replace("[i]", "[0]")
        try:
            parsed(f"{key}={json.dumps(prop['default'])}")
        except ConfigError as exc:
            raise AssertionError(f"the schema's default of {path} is refused by the parser: {exc}") from None


def test_an_unknown_key_is_refused_by_both() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    raw = copy.deepcopy(FULL)
    raw["distill"]["train"]["epoch"] = 3
    assert [list(e.absolute_path) for e in jsonschema.Draft202012Validator(recipe_schema()).iter_errors(raw)] == [
        ["distill", "train"]]
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        parse_recipe(raw)


def _setting_values(prop: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """Values the schema allows and refuses for one setting, from its bounds and choices."""
    good, bad = [], []
    if "minimum" in prop:
        good.append(prop["minimum"])
        bad.append(prop["minimum"] - 1)
    if "exclusiveMinimum" in prop:
        bad.append(prop["exclusiveMinimum"])
    if "maximum" in prop:
        good.append(prop["maximum"])
        bad.append(prop["maximum"] + 1)
    if "enum" in prop:
        good += prop["enum"]
        bad.append("bogus")
    return good, bad


def test_the_settings_bounds_and_choices_are_the_parser_s() -> None:
    """A value at a bound (or among the choices) parses; one past it (or not among them) is refused."""
    distill = recipe_schema()["properties"]["distill"]["properties"]
    checked = 0
    for name in settings_table():
        good, bad = _setting_values(distill[name])
        for value in good:
            parsed(f"distill.{name}={json.dumps(value)}")
        for value in bad:
            with pytest.raises(ConfigError, match=name):
                parsed(f"distill.{name}={json.dumps(value)}")
        checked += len(good) + len(bad)
    assert checked > 30


def test_the_schema_judges_those_values_as_the_parser_does() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    distill = recipe_schema()["properties"]["distill"]["properties"]
    for name in settings_table():
        good, bad = _setting_values(distill[name])
        for value in good:
            jsonschema.validate(value, distill[name])
        for value in bad:
            with pytest.raises(jsonschema.ValidationError):
                jsonschema.validate(value, distill[name])


@pytest.mark.parametrize("path", sorted((ROOT / "pipelines").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_recipe_fits_the_schema(path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(recipe_schema())
    jsonschema.validate(yaml.safe_load(path.read_text()), recipe_schema())


def test_the_docs_list_every_key_with_its_type_and_default() -> None:
    text = recipe_markdown()
    assert "| `distill.factor` | whole number >= 1 | `2` | atsc, simkd: projector bottleneck factor r" in text
    assert "| `distill.train.epochs` | whole number | `10` |" in text
    assert "| `teachers[i].train.lr` | number | `0.05` |" in text
    assert "| `distill.student` | text | required |" in text
    assert "| `validate.batch_sizes` | list of whole numbers | `[1, 32]` |" in text
    assert "| `export.tensorrt.precision` | text | `\"fp16\"` | fp32 \\| fp16 \\| int8 |" in text  # '|' escaped
    for name in settings_table():
        assert f"| `distill.{name}` |" in text
    for backend in BACKENDS.values():
        assert f"| `export.{backend.name}` |" in text
    for gate in GATES:
        assert f"| `validate.gates.{gate}` |" in text


def test_types_in_words() -> None:
    assert describe_type({"type": ["integer", "null"], "minimum": 1}) == "whole number or null >= 1"
    assert describe_type({"enum": ["a", None]}) == "one of `a`, `null`"
    assert describe_type(type_schema(tuple[int, int, int])) == "list of 3 whole numbers"
    assert describe_type(type_schema(dict[str, str])) == "mapping (name -> text)"


def test_a_field_type_without_a_schema_fails_loudly() -> None:
    with pytest.raises(TypeError, match="no JSON Schema for a recipe field of type"):
        type_schema(set[int])


@dataclass
class _Commented:
    a: int = 1  # the a
    b: str = "# not a comment"
    c: float = 0.5  # the c: with a colon

    def method(self) -> int:
        a: int = 2  # a local variable, not the field's doc
        return a


def test_field_docs_are_the_fields_trailing_comments() -> None:
    assert field_docs(_Commented) == {"a": "the a", "c": "the c: with a colon"}
