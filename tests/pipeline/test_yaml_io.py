"""Recipe files read strictly: hostile encodings, nesting, aliases, numbers and sizes give one line each
(issue 17, item 10)."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from compress.errors import ConfigError
from compress.pipeline.spec import load_recipe
from compress.pipeline.yaml_io import MAX_BYTES, read_recipe_yaml, shorten

RECIPES = Path(__file__).resolve().parents[2] / "pipelines"
CI_RECIPE = (RECIPES / "fashion_mnist_ci.yaml").read_text()


def write(tmp_path: Path, content: str | bytes, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def assert_refused(path: Path, pattern: str) -> str:
    with pytest.raises(ConfigError, match=pattern) as info:
        load_recipe(path)
    message = str(info.value)
    assert "\n" not in message and len(message) <= 500, message
    return message


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-32"])
def test_a_recipe_with_a_byte_order_mark_reads_as_its_utf8_twin(tmp_path: Path, encoding: str) -> None:
    with_bom = write(tmp_path, CI_RECIPE.encode(encoding), "fashion_mnist_ci.yaml")
    assert with_bom.read_bytes().startswith((codecs.BOM_UTF8, codecs.BOM_UTF16, codecs.BOM_UTF32))
    assert load_recipe(with_bom).to_dict() == load_recipe(RECIPES / "fashion_mnist_ci.yaml").to_dict()


@pytest.mark.parametrize("content, pattern", [
    (b"name: t\xff\xfe\n", r"recipe\.yaml: not UTF-8 text \(byte 7: b'\\xff'\): save the recipe as UTF-8$"),
    ("name: t\n".encode("utf-16-le"), r"recipe\.yaml: holds NUL bytes: it is UTF-16/32 without a byte-order mark"),
    (codecs.BOM_UTF16_LE + b"\x00\xd8", r"recipe\.yaml: not UTF-16 text"),  # a lone surrogate
    (b"name: t\x07\n",
     r"recipe\.yaml: not valid YAML \(unacceptable character #x0007: special characters are not allowed\)$"),
])
def test_text_that_is_not_utf8_or_marked_is_refused(tmp_path: Path, content: bytes, pattern: str) -> None:
    assert_refused(write(tmp_path, content), pattern)


@pytest.mark.parametrize("nested", [
    " " + "[" * 3000 + "]" * 3000,
    " " + "{a: " * 3000 + "1" + "}" * 3000,
    "".join("\n" + "  " * depth + "a:" for depth in range(1, 201)) + " 1",
], ids=["flow lists", "flow mappings", "block mappings"])
def test_deep_nesting_is_refused_in_one_line(tmp_path: Path, nested: str) -> None:
    assert_refused(write(tmp_path, "name: t\ndata:" + nested + "\n"),
                   r"recipe\.yaml: line \d+: values nested deeper than 32 levels: a recipe needs a handful$")


def test_aliases_may_not_contain_themselves_or_expand_without_limit(tmp_path: Path) -> None:
    assert_refused(write(tmp_path, "name: t\ndata: &a {x: [*a]}\n"),
                   r"line 2: alias \*a sits inside the value it names")
    laughs = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 9))
    assert_refused(write(tmp_path, laughs), r"aliases expand to more than 100,000 values")
    chain = "a0: &a0 [x]\n" + "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 40))
    assert_refused(write(tmp_path, chain), r"aliases expand to values nested deeper than 32 levels")


def test_merge_keys_still_override_as_yaml_says(tmp_path: Path) -> None:
    data = read_recipe_yaml(write(tmp_path, "base: &b {epochs: 2, lr: 0.1}\ntrain: {<<: *b, epochs: 5}\n"))
    assert data["train"] == {"epochs": 5, "lr": 0.1}


@pytest.mark.parametrize("recipe, pattern", [
    (CI_RECIPE.replace("  workers: 0", "  workers: 0\n  workers: 2"),
     r"line 13: key 'workers' appears twice in one mapping \(first on line 12\): YAML would silently keep the last"),
    (CI_RECIPE + "name: other\n", r"key 'name' appears twice in one mapping \(first on line 5\)"),
    ("name: t\ndata: {name: cifar10, name: cifar100}\n", r"line 2: key 'name' appears twice"),
])
def test_duplicate_keys_are_refused(tmp_path: Path, recipe: str, pattern: str) -> None:
    assert_refused(write(tmp_path, recipe), pattern)


def test_numbers_too_long_or_not_whole_give_one_line(tmp_path: Path) -> None:
    long_int = CI_RECIPE.replace("train_limit: 10000", "train_limit: " + "9" * 5001)
    assert_refused(write(tmp_path, long_int),
                   r"line 9: a whole number of 5001 digits: no recipe value needs more than 30$")
    big_int = CI_RECIPE.replace("train_limit: 10000", "train_limit: " + "9" * 25)
    assert_refused(write(tmp_path, big_int),
                   r"data\.train_limit: expected whole number or null, got a 25-digit number$")
    big_epochs = CI_RECIPE.replace("epochs: 2", "epochs: " + "9" * 25)
    assert_refused(write(tmp_path, big_epochs),
                   r"distill\.train\.epochs: a 25-digit number is far too large for any setting$")
    for where in ("train_limit: 10000", "epochs: 2", "calibration: 512"):
        inf = CI_RECIPE.replace(where, where.split(":")[0] + ": .inf")
        assert_refused(write(tmp_path, inf), r"expected whole number( or null)?, got a number inf$")


def test_a_huge_file_is_refused_unread_and_a_long_value_is_not_echoed(tmp_path: Path) -> None:
    huge = write(tmp_path, CI_RECIPE.replace("name: fashion-mnist", "name: " + "x" * (50 * 2**20)))
    assert_refused(huge, r"recipe '.*recipe\.yaml' is larger than 1 MiB: a recipe is a few KB of settings")
    long_value = CI_RECIPE.replace("name: fashion-mnist", "name: " + "x" * (MAX_BYTES // 2))
    message = assert_refused(write(tmp_path, long_value), r"^.*recipe\.yaml: data\.name: unknown dataset 'xxx")
    assert "characters left out" in message


def test_shorten_keeps_the_start_and_the_advice() -> None:
    message = "data.name: unknown dataset '" + "x" * 10_000 + "': did you mean 'cifar10'?"
    short = shorten(message)
    assert short.startswith("data.name: unknown dataset 'xxx") and short.endswith("xxx': did you mean 'cifar10'?")
    left_out = len(message) - 266 - 133  # two thirds of 400 kept at the start, one third at the end
    assert len(short) < 450 and f"[... {left_out:,} characters left out ...]" in short
    assert shorten("short") == "short"


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_read_as_safe_load_reads_them(path: Path) -> None:
    import yaml

    assert read_recipe_yaml(path) == yaml.safe_load(path.read_text())
    load_recipe(path)
