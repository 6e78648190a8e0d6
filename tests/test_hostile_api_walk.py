"""The Python API walked with arguments of the wrong type (issue 23): ``compress.distill``, ``export``,
``validate`` and ``model`` either get as far as their real work (where a sentinel stops them) or raise a
``CompressError`` with a one-line message; never an AttributeError/TypeError from deep inside.

Every parameter of each function (read from its signature) gets each hostile value in turn, the others
keeping a valid value. The sentinels are the CLI fuzzer's (``test_fuzz_cli``): data loading, checkpoint
loading and artifact opening stop an accepted call, so nothing trains.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable

import pytest
from test_fuzz_cli import TEACHER, Accepted, keep_random_state, sentinels  # noqa: F401 (fixtures)

import compress
from compress import api
from compress.errors import CompressError

HOSTILE: list[Any] = [None, 3, -1, 2.5, float("nan"), True, "", "x" * 5000, "../../../etc/passwd", b"bytes", [],
                      [None], {}, {"a": None}, object(), print]


def _valid(tmp_path: Path) -> dict[str, tuple[Callable[..., Any], dict[str, Any]]]:
    """Each function with arguments that get it to its real work."""
    return {
        "distill": (api.distill, {"student": "resnet8", "teachers": [TEACHER], "data": "fashion-mnist",
                                  "method": "kd", "out": tmp_path / "distill", "epochs": 1, "train_limit": 64}),
        "export": (api.export, {"checkpoint": TEACHER, "out": tmp_path / "export", "build": ["onnx"]}),
        "validate": (api.validate, {"artifacts": {"teacher": TEACHER}, "data": "fashion-mnist",
                                    "measure_latency": False}),
    }


def _parameters(function: Callable[..., Any]) -> list[str]:
    return [name for name, p in inspect.signature(function).parameters.items()
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and name not in ("log", "dist", "load")]


def test_the_api_refuses_wrong_types_in_one_line(sentinels: None, tmp_path: Path) -> None:  # noqa: F811
    failures, outcomes = [], {"accepted": 0, "refused": 0}
    for name, (function, valid) in _valid(tmp_path).items():
        for parameter in _parameters(function):
            for value in HOSTILE:
                kwargs = {**valid, parameter: value}
                try:
                    function(**kwargs)
                    outcomes["accepted"] += 1
                except Accepted:
                    outcomes["accepted"] += 1
                except CompressError as exc:
                    outcomes["refused"] += 1
                    text = str(exc)
                    if "\n" in text or not text:  # long values stay whole here: the CLI shortens its line
                        failures.append(f"{name}({parameter}={value!r:.40}): not one short line: {text[:200]!r}")
                except Exception as exc:  # noqa: BLE001 - what the walk looks for
                    failures.append(f"{name}({parameter}={value!r:.40}): {type(exc).__name__}: {str(exc)[:160]}")
    assert not failures, f"{len(failures)} calls broke the invariant:\n" + "\n".join(failures[:25])
    assert outcomes["accepted"] > 0 and outcomes["refused"] > outcomes["accepted"], outcomes


@pytest.mark.parametrize("value", HOSTILE)
def test_model_refuses_what_is_not_a_factory(value: Any) -> None:
    with pytest.raises(CompressError):
        compress.model(value)
