"""Issue 23: the deploy fuzzer extended to OpenVINO IR: mutated ``.xml``, ``.bin`` and sidecars, and
weights names that point elsewhere, run through ``python -m deploy classify`` with memory capped.

The invariant of the ONNX fuzzer (exit 0, 1 or 2; no traceback; every stderr line one ``error:``
line; classify accounts for every image) plus integrity: a case that changed the bytes OpenVINO
reads without the sidecar's hashes following (or that names other weights in the sidecar) never
exits 0 unless ``--trust`` was given. Cases that also fix the hashes up, as an attacker who rewrites
the sidecar would, must still fail cleanly or run. DEPLOY_FUZZ_SEED / OPENVINO_FUZZ_CASES explore more.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest
from fuzz_mutators import flip_bytes
from hostile import run_cli
from PIL import Image
from test_deploy_fuzz import Case, invariant_broken

pytest.importorskip("openvino", reason="the openvino extra is not installed")

SEED = int(os.environ.get("DEPLOY_FUZZ_SEED", "23"))
CASES = int(os.environ.get("OPENVINO_FUZZ_CASES", "12"))  # a process each: ~40 s on two idle cores
HOSTILE_NAMES: list[Any] = ["../../../etc/passwd", "/etc/passwd", "pristine.bin", "./model.bin", "model.BIN",
                            "model.bin/", "", None, 7, ["model.bin"], "model.bin\x00x", "x" * 5000]


@pytest.fixture(scope="module")
def ir_folder(onnx_model, tmp_path_factory) -> Path:
    from compress.export.openvino import export_openvino

    return export_openvino(onnx_model[0], tmp_path_factory.mktemp("ir")).files["fp32"].parent


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _xml_mutation(rng: random.Random, text: str) -> tuple[str, str]:
    kind = rng.randrange(5)
    if kind == 0:
        return text[:rng.randrange(len(text))], "xml cut short"
    if kind == 1:
        return flip_bytes(rng, text.encode(), 8).decode("latin-1"), "xml bytes flipped"
    if kind == 2:
        return text.replace('element_type="f32"', 'element_type="f64"', 1), "xml element type f64"
    if kind == 3:
        return text.replace('offset="0"', f'offset="{rng.choice([2**40, -1, 10**30])}"', 1), "xml huge offset"
    return text.replace("<dim>10</dim>", f"<dim>{rng.choice([10**9, 0, -5, 100001])}</dim>"), "xml class dim"


def _bin_mutation(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    kind = rng.randrange(3)
    if kind == 0:
        return flip_bytes(rng, data, 16), "bin bytes flipped"
    if kind == 1:
        return data[:rng.randrange(len(data))], "bin cut short"
    return b"\xff" * len(data), "bin all 0xff (NaN weights)"


def build(rng: random.Random, index: int, ir: Path, image: Path, tmp: Path) -> tuple[Case, bool]:
    """A mutated copy of the IR; returns the case and whether it must not succeed (tampered, untrusted)."""
    folder = tmp / f"case{index}"
    folder.mkdir()
    xml, weights = (ir / "model.xml").read_text(), (ir / "model.bin").read_bytes()
    side = json.loads((ir / "model.xml.json").read_text())
    what, tampered, rehash = [], False, rng.random() < 0.4  # rehash: the attacker rewrites the hashes too
    if rng.random() < 0.5:
        xml, change = _xml_mutation(rng, xml)
        what.append(change)
        tampered = True
    if rng.random() < 0.5:
        shutil.copy(ir / "model.bin", folder / "pristine.bin")
        weights, change = _bin_mutation(rng, weights)
        what.append(change)
        tampered = True
    if rehash:
        side["sha256"], side["weights"]["sha256"] = _sha(xml.encode("latin-1", "replace")), _sha(weights)
        what.append("hashes rewritten")
        tampered = False
    if rng.random() < 0.4:
        name = rng.choice(HOSTILE_NAMES)
        side["weights"]["file"] = name
        what.append(f"weights named {str(name)[:30]!r}")
        tampered = True
    (folder / "model.xml").write_bytes(xml.encode("latin-1", "replace"))
    (folder / "model.bin").write_bytes(weights)
    (folder / "model.xml.json").write_text(json.dumps(side))
    trust = ["--trust"] if rng.random() < 0.2 else []
    what += trust
    return Case(["classify", folder / "model.xml", image, *trust], 1, what), tampered and not trust


def test_fuzzed_openvino_irs_keep_the_cli_contract_and_integrity(ir_folder, raw_images, tmp_path):
    image = tmp_path / "img.png"
    Image.fromarray(raw_images[0]).save(image)
    clean = run_cli("classify", ir_folder / "model.xml", image)
    assert clean.returncode == 0 and clean.stdout.count("\n") == 1, clean.stderr
    rng = random.Random(SEED)
    broken, outcomes = [], collections.Counter()
    for index in range(CASES):
        case, must_fail = build(rng, index, ir_folder, image, tmp_path)
        run = run_cli(*case.args, timeout=60)
        outcomes[run.returncode] += 1
        reason = invariant_broken(run, case)
        if reason is None and must_fail and run.returncode == 0:
            reason = "changed files were used without --trust: " + run.stdout.strip()
        if reason:
            broken.append(f"case {index} ({'; '.join(case.what)}): {reason}")
    assert not broken, "\n".join(broken)
    assert outcomes[0] and outcomes[1], outcomes
