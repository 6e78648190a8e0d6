"""The JSON Schema of a pipeline recipe (``compress schema``), generated from the classes it is parsed into.

Each key's type and default come from its dataclass field, its meaning from the field's comment (or,
for method settings, the ``setting()`` doc, with its bounds and choices); the export section has one key
per backend of ``compress.export.backends.BACKENDS`` and the gates one per gate of ``GATES``. Only the
shape of the sections (which class sits under which key) is written here, following ``spec.parse_recipe``.
``recipe_markdown`` renders the same schema as docs/recipes.md.
"""

from __future__ import annotations

import inspect
import io
import json
import re
import textwrap
import tokenize
import types
import typing
from dataclasses import MISSING, Field, fields
from typing import Any, Mapping

from compress.pipeline.fields import NAME, plain

DRAFT = "https://json-schema.org/draft/2020-12/schema"
Schema = dict[str, Any]


# ------------------------------------------------------------------------------------ types and fields

def type_schema(hint: Any) -> Schema:
    """The JSON Schema of a field type that ``fields.convert`` reads (bool, int, float, str, X | None,
    tuple[...], list[...], dict[str, X])."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        kinds = [type_schema(a) for a in args if a is not type(None)]
        if len(kinds) == 1 and isinstance(kinds[0].get("type"), str):
            return {**kinds[0], "type": [kinds[0]["type"], "null"]}
        return {"anyOf": [*kinds, {"type": "null"}]}
    if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
        return {"type": "array", "prefixItems": [type_schema(a) for a in args], "minItems": len(args),
                "maxItems": len(args)}
    if origin in (tuple, list):
        return {"type": "array", "items": type_schema(args[0])}
    if origin is dict:
        return {"type": "object", "additionalProperties": type_schema(args[1])}
    simple = {bool: "boolean", int: "integer", float: "number", str: "string"}
    if hint not in simple:
        raise TypeError(f"no JSON Schema for a recipe field of type {hint}: add it to type_schema")
    return {"type": simple[hint]}


def field_docs(cls: type) -> dict[str, str]:
    """Field name -> the comment at the end of its line in ``cls``'s source: what a plain config
    dataclass says about its fields. Empty when the source is not available."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    names = {f.name for f in fields(cls)}
    docs: dict[str, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type != tokenize.COMMENT:
            continue
        match = re.match(r"^    (\w+)\s*:", token.line)  # a field of the class body, not of a method
        text = token.string.lstrip("#").strip()
        if match and match.group(1) in names and not text.startswith(("type:", "noqa")):
            docs[match.group(1)] = text
    return docs


def class_doc(cls: type) -> str:
    """The first paragraph of ``cls``'s docstring on one line ('' for the one a dataclass makes up)."""
    doc = inspect.cleandoc(cls.__doc__ or "")
    if doc.startswith(f"{cls.__name__}("):
        return ""
    return " ".join(doc.split("\n\n")[0].split()).replace("``", "`")


def _default(f: Field[Any]) -> Any:
    if f.default is not MISSING:
        return plain(f.default)
    if f.default_factory is not MISSING:
        return plain(f.default_factory())
    return MISSING


def properties(cls: type, exclude: tuple[str, ...] = (),
               shapes: Mapping[str, Schema] | None = None) -> dict[str, Schema]:
    """The recipe keys of dataclass ``cls``: each field's meaning, type and default, in field order.

    ``shapes`` gives the schema of fields whose type is another section (a ``TrainSpec``), or which take
    more than their type says; their meaning and default still come from the field."""
    hints, docs = typing.get_type_hints(cls), field_docs(cls)
    out: dict[str, Schema] = {}
    for f in fields(cls):
        if f.name in exclude:
            continue
        rule = f.metadata.get("rule")
        doc = getattr(rule, "doc", None) or docs.get(f.name)
        shape = (shapes or {}).get(f.name) or type_schema(hints[f.name])
        prop: Schema = {"description": doc} if doc else {}
        prop |= {k: v for k, v in shape.items() if not (doc and k == "description")}
        if rule is not None:
            prop |= _rule_schema([rule], optional=type(None) in typing.get_args(hints[f.name]))
        default = _default(f)
        if default is not MISSING:
            prop["default"] = default
        out[f.name] = prop
    return out


def _rule_schema(rules: list[Any], optional: bool) -> Schema:
    """Bounds and choices of a ``compress.distill.settings.Rule`` (when every method's rule agrees)."""
    first = rules[0]
    limits = ("low", "high", "above", "choices")
    if any(tuple(getattr(r, k) for k in limits) != tuple(getattr(first, k) for k in limits) for r in rules):
        return {}
    out: Schema = {}
    if first.low is not None:
        out["exclusiveMinimum" if first.above else "minimum"] = first.low
    if first.high is not None:
        out["maximum"] = first.high
    if first.choices:
        out["enum"] = [*first.choices, *([None] if optional else [])]
    return out


def _names(registry: Any, listing: bool = True) -> str:
    """A registry's names in words, or where to list them when they are many."""
    if listing:
        return "one of " + ", ".join(registry.names())
    return f"see `compress list {registry.kind}s`"


def _described(schema: Schema, text: str) -> Schema:
    """``schema`` with ``text`` after its description: a sentence of its own after one that ends."""
    before = schema.get("description", "")
    if before.endswith("."):
        joined = f"{before} {text[0].upper()}{text[1:]}."
    else:
        joined = f"{before}; {text}" if before else text
    return {"description": joined, **{k: v for k, v in schema.items() if k != "description"}}


def _closed(props: dict[str, Schema], doc: str = "", required: tuple[str, ...] = ()) -> Schema:
    """An object with exactly these keys (a key the parser does not know is a mistake there too)."""
    out: Schema = {"description": doc} if doc else {}
    out |= {"type": "object", "properties": props, "additionalProperties": False}
    return out | ({"required": list(required)} if required else {})


# ------------------------------------------------------------------------------------------- sections

def _settings() -> dict[str, Schema]:
    """Every method's settings (``settings_table``): the keys of ``distill`` besides its own."""
    from compress.distill.config import settings_table

    out: dict[str, Schema] = {}
    for name, info in settings_table().items():
        by_doc: dict[str, list[str]] = {}
        for method, doc in info.docs.items():
            by_doc.setdefault(doc, []).append(method)
        text = " ".join(f"{', '.join(methods)}: {doc}." for doc, methods in by_doc.items())
        rules = list(info.rules.values())
        prop: Schema = {"description": text, **type_schema(info.hint)}
        prop |= _rule_schema(rules, optional=type(None) in typing.get_args(info.hint))
        if rules[0].names is not None:
            prop = _described(prop, f"a {rules[0].names.kind}: {_names(rules[0].names)}")
        defaults = list(info.defaults.items())
        if info.follows:
            prop = _described(prop, f"default: the training's, `distill.train.{info.follows}`")
        elif len({repr(v) for _, v in defaults}) == 1:
            prop["default"] = defaults[0][1]
        else:
            prop = _described(prop, "default: " + ", ".join(f"{m} {v}" for m, v in defaults))
        out[name] = prop
    return out


def train_schema() -> Schema:
    from compress.distill.config import PRESETS
    from compress.pipeline.spec import TrainSpec
    from compress.train_config import TrainConfig

    own = properties(TrainSpec, exclude=("config",))
    own["preset"] = _described(own["preset"], _names(PRESETS))
    return _closed({**own, **properties(TrainConfig)}, class_doc(TrainSpec))


def teacher_schema() -> Schema:
    from compress.models import MODELS
    from compress.pipeline.spec import TeacherSpec

    props = properties(TeacherSpec, shapes={"train": {"anyOf": [{"type": "null"}, train_schema()]}})
    props["model"] = _described(props["model"], _names(MODELS, listing=False))
    return _closed(props) | {"oneOf": [{"required": ["model"]}, {"required": ["checkpoint"]}]}


def distill_schema() -> Schema:
    from compress.distill import METHODS
    from compress.models import MODELS
    from compress.pipeline.spec import DEFAULT_METHODS, DistillSpec

    settings = _settings()
    name = {"description": "the run's name: its row in the table and its folder", "type": "string",
            "pattern": NAME.pattern}
    method = {"description": f"the method it runs: {_names(METHODS)}", "type": "string"}
    variant = _closed({"name": name, "method": method, **settings}, required=("name", "method"))
    own = properties(DistillSpec, exclude=("settings", "variants"), shapes={
        "methods": {"type": "array", "minItems": 1, "items": {"anyOf": [{"type": "string"}, variant]}},
        "train": train_schema()})
    own["student"] = _described(own["student"], _names(MODELS, listing=False))
    own["methods"] = _described(own["methods"], f"each a method ({_names(METHODS)}) or a variant {{name, method, "
                                "<settings>}: a run of its own, its settings over the section's")
    own["methods"]["default"] = list(DEFAULT_METHODS)
    return _closed({**own, **settings}, class_doc(DistillSpec), required=("student",))


def export_schema() -> Schema:
    from compress.export.backends import BACKENDS
    from compress.pipeline.sections import ExportSpec

    props = {name: {"description": f"{backend.help} `true` or `{{}}`: with the defaults; absent or `false`: not built",
                    "anyOf": [{"type": ["boolean", "null"]}, _closed(properties(backend.options))]}
             for name, backend in BACKENDS.items()}
    needs = {name: list(backend.built_from) for name, backend in BACKENDS.items() if backend.built_from}
    return _closed(props, class_doc(ExportSpec)) | {"dependentRequired": needs}


def gates_schema() -> Schema:
    """One set of gates for every validated stage but the reference, or one set per stage."""
    from compress.pipeline.sections import VALIDATED
    from compress.validate.gates import GATES, GateSpec

    props: dict[str, Schema] = {}
    for name, gate in GATES.items():
        bounds = {"minimum": 0, "maximum": 100} if gate.percent else {"exclusiveMinimum": 0}
        props[name] = {"description": gate.help[0].upper() + gate.help[1:].rstrip("."), "type": "number", **bounds}
    props |= properties(GateSpec, exclude=("values",))
    gates = _closed(props)
    per_stage = {"type": "object", "propertyNames": {"enum": list(VALIDATED)}, "additionalProperties": gates}
    return {"anyOf": [gates, per_stage]}


def validate_schema() -> Schema:
    from compress.export.backends import BACKENDS
    from compress.pipeline.sections import ValidationSpec

    providers = {"type": "object", "propertyNames": {"enum": list(BACKENDS)}, "additionalProperties": {"type": "string"}}
    props = properties(ValidationSpec, exclude=("parsed_gates",), shapes={"gates": gates_schema(),
                                                                           "providers": providers})
    props["gates"]["description"] = ("what the report judges (a failed gate makes `compress run` exit 3): thresholds "
                                     "for every stage but the student, e.g. {min_agreement: 99.9}, or per stage, e.g. "
                                     "{onnx: {min_agreement: 99.9}, int8: {max_top1_drop: 1}}")
    return _closed(props, class_doc(ValidationSpec))


def recipe_schema() -> Schema:
    """The JSON Schema (draft 2020-12) of a recipe: every key, its type, default, meaning and bounds."""
    from compress.data import DATASETS, DataConfig
    from compress.pipeline.sections import ReportSpec
    from compress.pipeline.spec import PipelineSpec, TeacherSpec

    data = properties(DataConfig, exclude=("batch_size",))
    data["name"] = _described(data["name"], f"the dataset: {_names(DATASETS)}")
    top = {
        "name": {"description": field_docs(PipelineSpec)["name"], "type": "string", "pattern": NAME.pattern},
        "data": _closed(data, "The images: the dataset, its subsets and how it is loaded. The batch size belongs "
                              "to each training (`train.batch_size`)."),
        "teachers": {"description": f"The teachers, in order. {class_doc(TeacherSpec)}", "type": "array",
                     "items": teacher_schema(), "default": []},
        "distill": distill_schema(),
        "export": export_schema(),
        "validate": validate_schema(),
        "report": _closed(properties(ReportSpec), class_doc(ReportSpec)),
    }
    return {"$schema": DRAFT, "title": "compress pipeline recipe",
            "description": "A pipeline recipe (pipelines/*.yaml), run by `compress run RECIPE`. Generated by "
                           "`compress schema` from the config classes.", **_closed(top, required=("distill",))}


# ---------------------------------------------------------------------------------------- the key docs

DOCS_HEADER = """# Recipe keys

<!-- Generated from the config classes by `compress schema --markdown > docs/recipes.md`: do not edit by hand. -->

Every key of a pipeline recipe (`pipelines/*.yaml`, run by `compress run RECIPE`): its type, its default
and what it means. A key left out takes its default; `distill` is the only section a recipe must have.
Any key can be changed for one run without editing the file, with the same checks as in the file:
`compress run RECIPE --set distill.train.epochs=4` (the value is YAML: `--set validate.batch_sizes=[1,8]`,
`--set teachers[0].train.epochs=2`). `compress schema` prints the same keys as a JSON Schema, for editors
and CI checks.
"""


def _inner(prop: Schema, path: str) -> tuple[Schema, str] | None:
    """The object whose keys are listed under ``path``, and their path prefix; None for a plain value."""
    if "properties" in prop:
        return prop, path
    for alternative in prop.get("anyOf", []):
        if "properties" in alternative:
            return alternative, path
    items = prop.get("items", {})
    return (items, f"{path}[i]") if prop.get("type") == "array" and "properties" in items else None


def key_rows(obj: Schema, path: str) -> list[tuple[str, Schema, bool]]:
    """(path, schema, required) of every key under ``obj``, depth first, in the schema's order."""
    rows = []
    for key, prop in obj["properties"].items():
        where = f"{path}.{key}" if path else key
        rows.append((where, prop, key in obj.get("required", ())))
        inner = _inner(prop, where)
        if inner is not None:
            rows += key_rows(*inner)
    return rows


def describe_type(prop: Schema) -> str:
    """A key's type in words: ``whole number >= 1``, ``list of whole numbers``, ``one of `a`, `b```."""
    if "anyOf" in prop:
        return " or ".join(describe_type(alternative) for alternative in prop["anyOf"])
    if "enum" in prop:
        return "one of " + ", ".join("`null`" if v is None else f"`{v}`" for v in prop["enum"])
    kinds = prop.get("type", [])
    words = {"boolean": "true/false", "integer": "whole number", "number": "number", "string": "text", "null": "null"}
    text = " or ".join(_kind(kind, prop, words) for kind in ([kinds] if isinstance(kinds, str) else kinds))
    bounds = [f"{op} {prop[key]}" for key, op in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="))
              if key in prop]
    return f"{text} {' and '.join(bounds)}" if bounds else text


def _kind(kind: str, prop: Schema, words: Mapping[str, str]) -> str:
    if kind == "array":
        if "prefixItems" in prop:
            return f"list of {len(prop['prefixItems'])} {describe_type(prop['prefixItems'][0])}s"
        items = prop.get("items", {})
        return "list of mappings" if "properties" in items else f"list of {describe_type(items)}s"
    if kind == "object":
        names = prop.get("propertyNames", {}).get("enum")
        values = prop.get("additionalProperties")
        if isinstance(values, dict):
            inner = "mapping" if "properties" in values else describe_type(values)
            return f"mapping ({'/'.join(names) if names else 'name'} -> {inner})"
        return "mapping"
    return words[kind]


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _table(rows: list[tuple[str, Schema, bool]]) -> list[str]:
    lines = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    for path, prop, required in rows:
        default = "required" if required else f"`{json.dumps(prop['default'])}`" if "default" in prop else ""
        meaning = prop.get("description", "")
        lines.append(f"| `{path}` | {_cell(describe_type(prop))} | {_cell(default)} | {_cell(meaning)} |")
    return lines


def recipe_markdown(schema: Schema | None = None) -> str:
    """docs/recipes.md: the top-level keys, then one table per section with every key under it."""
    schema = schema or recipe_schema()
    top = schema["properties"]
    lines = [DOCS_HEADER, "## Sections", "", *_table([(key, prop, key in schema["required"]) for key, prop in
                                                        top.items()])]
    for key, prop in top.items():
        inner = _inner(prop, key)
        if inner is not None:
            lines += ["", f"## {key}", "", *([_cell(prop["description"]), ""] if prop.get("description") else []),
                      *_table(key_rows(*inner))]
    return "\n".join(lines) + "\n"


__all__ = ["class_doc", "describe_type", "field_docs", "key_rows", "properties", "recipe_markdown", "recipe_schema",
           "type_schema"]
