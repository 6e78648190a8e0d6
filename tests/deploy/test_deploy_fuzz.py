"""Issue 17: a seeded mutation fuzzer over real ONNX models, sidecars, image files and options.

Each case mutates some of: an exported model (its metadata, tensor types and shapes, weights, nodes
or bytes), its sidecar, a few image files (encodings at several bit depths, then damaged) and the
options, and runs ``python -m deploy`` on them with the address space capped. The invariant: exit 0,
1 or 2; no traceback; every stderr line is one ``error:`` line; ``classify`` either fails as a whole
(one line, nothing printed) or accounts for every image (a result line or an error line each).
The seed is fixed, so every run covers the same cases; DEPLOY_FUZZ_SEED / DEPLOY_FUZZ_CASES explore more.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fuzz_mutators import bench_options, image_bytes, mutate_image, mutate_model, mutate_options, mutate_sidecar
from hostile import FASHION, Run, pooled_onnx, run_cli

SEED = int(os.environ.get("DEPLOY_FUZZ_SEED", "17"))
CASES = int(os.environ.get("DEPLOY_FUZZ_CASES", "40"))  # about 25 s on two busy cores
RGB = {**FASHION, "channels": 3, "mean": [0.5, 0.4, 0.3], "std": [0.25, 0.25, 0.25], "resize_size": 32}


@dataclass
class Base:
    name: str
    data: bytes
    pre: dict[str, Any]


@dataclass
class Case:
    args: list[Any]
    images: int  # image files given to classify (0 for bench)
    what: list[str]


@pytest.fixture(scope="module")
def bases(onnx_model, tmp_path_factory) -> list[Base]:
    """The exported Fashion-MNIST ResNet (static 28 x 28 grey) and a dynamic-size RGB model with a crop."""
    rgb = pooled_onnx(tmp_path_factory.mktemp("fuzz") / "rgb.onnx", channels=3, preprocessing=RGB)
    exported = json.loads(Path(f"{onnx_model[0]}.json").read_text())["preprocessing"]
    return [Base("resnet8", onnx_model[0].read_bytes(), exported), Base("rgb-crop", rgb.read_bytes(), RGB)]


def write_model(rng: random.Random, base: Base, folder: Path, what: list[str]) -> tuple[Path, list[str]]:
    """The (maybe mutated) model and its (maybe hostile) sidecar; the extra options it needs."""
    data = base.data
    if rng.random() < 0.45:
        data, change = mutate_model(rng, data, base.pre)
        what.append(change)
    model = folder / "model.onnx"
    model.write_bytes(data)
    side = json.dumps({"sha256": hashlib.sha256(data).hexdigest()}).encode()
    trust: list[str] = []
    if rng.random() < 0.15:
        hostile_side, change = mutate_sidecar(rng, hashlib.sha256(data).hexdigest())
        side, trust = hostile_side, ["--trust"] if rng.random() < 0.5 else []
        what.append(change + " " + " ".join(trust))
    if side is not None:
        Path(f"{model}.json").write_bytes(side)
    return model, trust


def build_case(rng: random.Random, index: int, bases: list[Base], pictures: Any, tmp: Path) -> Case:
    folder = tmp / f"case{index}"
    folder.mkdir()
    base = rng.choice(bases)
    what = [base.name]
    model, trust = write_model(rng, base, folder, what)
    if rng.random() < 0.2:
        options, change = bench_options(rng)
        return Case(["bench", model, *options, *trust], 0, what + [change])
    images = []
    for k in range(rng.choice([1, 2, 4])):
        data, kind = image_bytes(rng, pictures[rng.randrange(len(pictures))])
        if rng.random() < 0.5:
            data, kind = mutate_image(rng, data, kind)
        images.append(folder / f"img{k}.{kind.split('.')[-1].split(' ')[0]}")
        images[-1].write_bytes(data)
        what.append(kind)
    options: list[str] = []
    if rng.random() < 0.3:
        options, change = mutate_options(rng)
        what.append(change)
    return Case(["classify", model, *images, *options, *trust], len(images), what)


def invariant_broken(run: Run, case: Case) -> str | None:
    """Why ``run`` breaks the invariant, or None."""
    errors, results = run.stderr.splitlines(), run.stdout.splitlines()
    if "Traceback" in run.stderr or run.returncode not in (0, 1, 2):
        return f"exit {run.returncode}: {run.stderr[-600:]}"
    if not all(line.startswith("error: ") for line in errors) or (run.returncode == 0) != (not errors):
        return f"exit {run.returncode} with stderr {run.stderr[-600:]!r}"
    if case.args[0] == "bench":
        return None if len(errors) <= 1 else f"bench printed {len(errors)} error lines"
    whole_failure = run.returncode in (1, 2) and len(errors) == 1 and not results
    every_file = len(results) + len(errors) == case.images and run.returncode in (0, 1)
    return None if whole_failure or every_file else f"{len(results)} results + {len(errors)} errors " \
                                                      f"for {case.images} images: {run.stderr[-600:]!r}"


def test_fuzzed_inputs_keep_the_cli_contract(bases, raw_images, tmp_path):
    rng = random.Random(SEED)
    broken, outcomes = [], collections.Counter()
    for index in range(CASES):
        case = build_case(rng, index, bases, raw_images, tmp_path)
        run = run_cli(*case.args, timeout=60)
        outcomes[run.returncode] += 1
        reason = invariant_broken(run, case)
        if reason:
            broken.append(f"case {index} ({'; '.join(case.what)}): {reason}")
    assert not broken, "\n".join(broken)
    # the mutations reach every outcome: clean runs, bad files and bad options
    assert outcomes[0] and outcomes[1] and outcomes[2], outcomes
