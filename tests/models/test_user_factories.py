"""Issue 23, item 9: ``--model-factory`` names the code; the checkpoint supplies only its arguments.

A crafted sidecar must not turn a factory into a way to run a command: a factory is a class or a
function of the user's own code, it must return an nn.Module, and recorded arguments are numbers,
booleans, None or short names.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import compress
from compress.data.preprocessing import Preprocessing
from compress.deployable import load_deployable, save_deployable
from compress.errors import CheckpointError, ConfigError
from compress.models.base import ModelSpec
from compress.models.user import allow_factories, build_user_model, check_arguments, resolve_factory

ROOT = Path(__file__).resolve().parents[2]
HERE = __name__  # as pytest imported this file: the name references resolve to


class Net(nn.Module):
    def __init__(self, width: int = 4, variant: str = "plain") -> None:
        super().__init__()
        self.variant = variant
        self.body = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.flatten(self.pool(self.body(x)), 1))


def make_net(width: int = 4, variant: str = "plain") -> Net:
    return Net(width, variant)


def not_a_module(width: int = 4) -> dict[str, int]:
    return {"width": width}


PRE = Preprocessing(mean=(0.5,), std=(0.5,), image_size=28, channels=1, source_channels=1)


@pytest.mark.parametrize("reference, message", [
    ("os:system", r"'os:system' is a builtin_function_or_method, not a class or a function"),
    ("builtins:eval", r"'builtins:eval' is a builtin_function_or_method"),
    ("subprocess:run", r"'subprocess:run' comes from the Python standard library"),
    ("subprocess:Popen", r"'subprocess:Popen' is a class but not an nn.Module"),
    ("shutil:rmtree", r"comes from the Python standard library"),
    ("compress.models:create_model", r"comes from compress itself"),
    ("deploy:load", r"comes from deploy itself"),
])
def test_factories_outside_user_code_are_refused(reference: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_factory(reference)


def test_lambdas_partials_and_methods_are_refused() -> None:
    with pytest.raises(ConfigError, match="is a lambda, not a class or a function"):
        resolve_factory(lambda: Net())
    with pytest.raises(ConfigError, match="is a partial, not a class or a function"):
        resolve_factory(functools.partial(make_net, width=8))
    with pytest.raises(ConfigError, match="is a method"):
        resolve_factory(Net().forward)


def test_user_classes_and_functions_and_library_modules_are_accepted() -> None:
    assert resolve_factory(f"{HERE}:make_net")[1] is make_net  # imported by name
    assert resolve_factory(Net) == (f"{HERE}:Net", Net)
    assert resolve_factory("torch.nn:Linear")[1] is nn.Linear  # third-party nn.Module classes are code too


@pytest.mark.parametrize("value", ["rm -rf /", "../../etc/passwd", "a" * 65, "x.y", "", b"bytes", [1, 2],
                                   {"a": 1}, float("nan"), float("inf"), 1 << 63, (4,)])
def test_recorded_arguments_must_be_numbers_booleans_or_short_names(value: Any) -> None:
    spec = ModelSpec(f"python:{HERE}:make_net", 10, 1, kwargs={"variant": value})
    with allow_factories([make_net]), pytest.raises(CheckpointError, match=r"model factory argument 'variant' of "):
        build_user_model(spec)


def test_argument_names_and_shapes_are_checked() -> None:
    with pytest.raises(CheckpointError, match="are a list, not names and values"):
        check_arguments("m:f", [["width", 4]], CheckpointError)
    with pytest.raises(CheckpointError, match="has an argument named '__import__\\(\"os\"\\)', not a Python name"):
        check_arguments("m:f", {'__import__("os")': 1}, CheckpointError)
    assert check_arguments("m:f", {"width": 8, "variant": "wide-v2", "scale": 0.5, "bn": True, "x": None}) == {
        "width": 8, "variant": "wide-v2", "scale": 0.5, "bn": True, "x": None}


def test_a_factory_must_return_a_module_and_fit_the_arguments() -> None:
    with allow_factories([not_a_module]), pytest.raises(CheckpointError, match="returned a dict, not an nn.Module"):
        build_user_model(ModelSpec(f"python:{HERE}:not_a_module", 10, 1, kwargs={"width": 4}))
    with allow_factories([make_net]), pytest.raises(CheckpointError, match=r"cannot take the checkpoint's "
                                                                           r"arguments \(depth\)"):
        build_user_model(ModelSpec(f"python:{HERE}:make_net", 10, 1, kwargs={"depth": 3}))
    with pytest.raises(ConfigError, match="model factory argument 'variant' of .* is a str"):
        compress.model(make_net, variant="a b")  # refused when recorded, not only when read back


def _crafted(tmp_path: Path, name: str, kwargs: dict[str, Any]) -> Path:
    """An honest user-model checkpoint whose sidecar then names another factory and arguments (its hash
    covers only the tensors file, so it still matches)."""
    path = tmp_path / "model.safetensors"
    save_deployable(path, compress.model(make_net), PRE)
    side = Path(f"{path}.json")
    text = side.read_text().replace(f'"python:{HERE}:make_net"', json.dumps(name))
    record = json.loads(text)

    def patch(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("name") == name and "kwargs" in node:
                node["kwargs"] = kwargs
            for child in node.values():
                patch(child)
        elif isinstance(node, list):
            for child in node:
                patch(child)

    patch(record)
    side.write_text(json.dumps(record))
    assert json.dumps(kwargs) in side.read_text()
    return path


def test_crafted_sidecar_with_os_system_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    checkpoint = _crafted(tmp_path, "python:os:system", {"command": f"touch {marker}"})
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, "-m", "compress", "export", str(checkpoint), "--out", str(tmp_path / "x"),
                          "--model-factory", "os:system"], capture_output=True, text=True, cwd=ROOT, env=env,
                         timeout=300)
    assert not marker.exists()
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert "model factory 'os:system' is a builtin_function_or_method" in run.stderr


def test_crafted_arguments_for_a_real_factory_are_refused(tmp_path: Path) -> None:
    checkpoint = _crafted(tmp_path, f"python:{HERE}:make_net", {"width": 4, "variant": "$(touch /tmp/x)"})
    with allow_factories([make_net]), pytest.raises(CheckpointError, match="model factory argument 'variant'"):
        load_deployable(checkpoint)
    honest = _crafted(tmp_path / "h", f"python:{HERE}:make_net", {"width": 4, "variant": "plain"}) if (
        tmp_path / "h").mkdir() is None else None
    with allow_factories([make_net]):
        module, _, _ = load_deployable(honest)
    assert isinstance(module, nn.Module)
