"""Crafted checkpoints (issue 17, items 2 and 9): a sidecar that lies about sizes, malformed architecture
records, non-finite weights and non-finite outputs are refused with one line, in bounded memory.

A crafted sidecar keeps the checkpoint's hash (only the tensors file is hashed), as an attacker's would:
a matching hash proves only that file and sidecar belong together.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch

import compress
from compress.checkpoint import load_external_state_dict
from compress.cli import main
from compress.data import DataConfig, load_data
from compress.data.preprocessing import Preprocessing
from compress.deployable import load_deployable, save_deployable
from compress.errors import CheckpointError, IntegrityError, StructuredFileError
from compress.models import Branch, SharedHeadStudent, build_projector, create_model
from compress.validate.accuracy import evaluate_backends

Change = Callable[[dict[str, Any]], None]


@pytest.fixture(scope="module")
def preprocessing(fmnist_available: Path) -> Preprocessing:
    return load_data(DataConfig(train_limit=64, val_limit=64)).preprocessing


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory, preprocessing: Preprocessing) -> Path:
    """An honest resnet8 checkpoint for Fashion-MNIST (weights untrained: only their shapes matter here)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("classifier") / "model.safetensors"
    save_deployable(path, create_model("resnet8", 10, 1, 28), preprocessing)
    return path


@pytest.fixture(scope="module")
def shared_head(tmp_path_factory: pytest.TempPathFactory, preprocessing: Preprocessing) -> Path:
    """An honest shared-head student: resnet8 body, pointwise projector, a resnet14's head."""
    torch.manual_seed(0)
    student, teacher = create_model("resnet8", 10, 1, 28), create_model("resnet14", 10, 1, 28)
    projector = build_projector("pointwise", student.feature_channels, teacher.feature_channels, 2)
    module = SharedHeadStudent(student.spec, student.body, [Branch(projector, teacher.head_module, teacher.spec,
                                                                   resolved=True)])
    path = tmp_path_factory.mktemp("shared") / "model.safetensors"
    save_deployable(path, module, preprocessing)
    return path


def crafted(source: Path, folder: Path, change: Change) -> Path:
    """A copy of ``source`` whose sidecar ``change`` edited (the tensors, and so the hash, are untouched)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.safetensors"
    shutil.copy(source, path)
    record = json.loads(Path(f"{source}.json").read_text())
    change(record)
    Path(f"{path}.json").write_text(json.dumps(record))
    return path


def setter(*keys: Any, value: Any) -> Change:
    """A change that sets record[keys[0]][keys[1]]... to ``value``."""

    def change(record: dict[str, Any]) -> None:
        node = record
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value

    return change


def projector(key: str, value: Any) -> Change:
    return setter("architecture", "branches", 0, "projector", key, value=value)


# ---------------------------------------------------------------- sizes: bounded memory

BOMB_SCRIPT = r"""
import json, resource, sys
from compress.deployable import load_deployable
from compress.errors import CompressError

def vm_bytes():
    for line in open("/proc/self/status"):
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024

# everything imported so far stays usable; any allocation of more than 1 GiB beyond it fails
resource.setrlimit(resource.RLIMIT_AS, (vm_bytes() + (1 << 30), resource.getrlimit(resource.RLIMIT_AS)[1]))
results = {}
for path in sys.argv[1:]:
    try:
        load_deployable(path)
        results[path] = "loaded"
    except CompressError as exc:
        results[path] = f"{type(exc).__name__}: {exc}"
    except BaseException as exc:  # MemoryError, or the allocator's RuntimeError: what must not happen
        results[path] = f"CRASH {type(exc).__name__}: {str(exc)[:200]}"
print(json.dumps(results))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the address space size from /proc (Linux)")
def test_sizes_in_a_record_allocate_nothing_before_they_are_checked(classifier: Path, shared_head: Path,
                                                                    tmp_path: Path) -> None:
    """Each crafted record below asks for 2.5 GB to 36 TB; loading runs under an address-space limit of
    what the interpreter already uses + 1 GiB, so an allocation from the record fails the test at once."""
    bombs = {
        "classes_10M": (classifier, setter("architecture", "model", "num_classes", value=10_000_000),
                        r"num_classes is 10000000, outside 0\.\.100000"),
        "classes_2G": (classifier, setter("architecture", "model", "num_classes", value=2_000_000_000),
                       r"num_classes is 2000000000, outside"),
        "projector_1M": (shared_head, lambda r: (projector("in_channels", 1_000_000)(r),
                                                 projector("out_channels", 1_000_000)(r)),
                         r"in_channels is 1000000, outside"),
        # within the bounds (a 65,536-channel projector is 17 GB): only the safetensors header stops it
        "projector_64k": (shared_head, lambda r: (projector("in_channels", 65_536)(r),
                                                  projector("out_channels", 65_536)(r)),
                          r"weights do not fit its recorded architecture \('backbone\.|branches\.0\.projector"),
        "classes_99k": (classifier, setter("architecture", "model", "num_classes", value=99_999),
                        r"'head_module\.2\.weight' is \[10, 64\] in the file, \[99999, 64\] in the record"),
    }
    paths = {name: crafted(src, tmp_path / name, change) for name, (src, change, _) in bombs.items()}
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(compress.__file__).parents[1])}
    done = subprocess.run([sys.executable, "-c", BOMB_SCRIPT, str(classifier), *map(str, paths.values())],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert results[str(classifier)] == "loaded"  # an honest checkpoint loads under the same limit
    for name, (_, _, pattern) in bombs.items():
        outcome = results[str(paths[name])]
        assert outcome.startswith("CheckpointError: ") and "\n" not in outcome, (name, outcome)
        assert re.search(pattern, outcome), (name, outcome)


# ---------------------------------------------------------------- malformed records: one line each

MALFORMED: dict[str, tuple[str, Change, str]] = {
    "architecture is a list": ("classifier", setter("architecture", value=[]), r"the architecture is a list"),
    "model is a string": ("classifier", setter("architecture", "model", value="x"), r"record is malformed"),
    "no model": ("classifier", lambda r: r["architecture"].pop("model"), r"malformed \(KeyError: missing 'model'\)"),
    "classes as text": ("classifier", setter("architecture", "model", "num_classes", value="10"),
                        r"record is malformed \(TypeError"),
    "fractional classes": ("classifier", setter("architecture", "model", "num_classes", value=10.5),
                           r"record is malformed \(TypeError"),
    "negative classes": ("classifier", setter("architecture", "model", "num_classes", value=-3),
                         r"num_classes is -3, outside 0\.\.100000"),
    "unknown model": ("classifier", setter("architecture", "model", "name", value="nope"),
                      r"cannot be built: unknown model 'nope'"),
    "no type": ("classifier", lambda r: r["architecture"].pop("type"), r"unknown architecture type 'None'"),
    "huge name": ("classifier", setter("architecture", "model", "name", value="x" * 5000), r"5000-character string"),
    "deep nesting": ("classifier", setter("architecture", "extra", value=json.loads("[" * 50 + "]" * 50)),
                     r"nests deeper than 8 levels"),
    "branches not a list": ("shared", setter("architecture", "branches", value=5), r"record is malformed"),
    "no branch": ("shared", setter("architecture", "branches", value=[]), r"record is malformed \(ValueError"),
    "many branches": ("shared", lambda r: r["architecture"].update(branches=r["architecture"]["branches"] * 65),
                      r"branches has 65 entries \(at most 64\)"),
    "projector factor 0": ("shared", projector("factor", 0), r"cannot be built: projector factor must be >= 1"),
    "huge alignment": ("shared", setter("architecture", "branches", 0, "align", value=[10**9, 1]),
                       r"align\.0 is 1000000000, outside"),
    "input of 100k px": ("classifier", setter("preprocessing", "image_size", value=100_000),
                         r"input size of \[100000\] px, outside 1\.\.2048"),
    "zero std": ("classifier", setter("preprocessing", "std", value=[0.0]), r"unusable preprocessing"),
    "preprocessing is text": ("classifier", setter("preprocessing", value="x"), r"has a malformed record"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_record_is_one_clear_line(case: str, classifier: Path, shared_head: Path, tmp_path: Path) -> None:
    source, change, pattern = MALFORMED[case]
    path = crafted(classifier if source == "classifier" else shared_head, tmp_path / "c", change)
    with pytest.raises(CheckpointError, match=pattern) as caught:
        load_deployable(path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


def test_a_sidecar_that_is_not_ours_is_refused_before_it_is_parsed(classifier: Path, tmp_path: Path) -> None:
    path = crafted(classifier, tmp_path / "c", lambda r: None)
    side = Path(f"{path}.json")
    side.write_text("[" * 100_000 + "]" * 100_000)  # deeper than Python's JSON parser goes
    with pytest.raises(CheckpointError, match=r"\.json' nests 100,000 levels deep, more than the 64"):
        load_deployable(path)
    side.write_text("[1, 2]")
    with pytest.raises(IntegrityError, match="does not hold a sidecar record"):
        load_deployable(path)
    side.write_text(" " * (17 << 20))  # 17 MiB: never read into memory
    with pytest.raises(StructuredFileError, match=r"is 17\.0 MiB, more than the 16\.0 MiB such a file holds"):
        load_deployable(path)


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    return int(stopped.value.code or 0), capsys.readouterr().err


@pytest.mark.parametrize("case", ["model is a string", "no branch", "input of 100k px"])
def test_validate_reports_a_malformed_record_in_one_line(case: str, classifier: Path, shared_head: Path,
                                                         tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source, change, pattern = MALFORMED[case]
    path = crafted(classifier if source == "classifier" else shared_head, tmp_path / "c", change)
    code, err = run_cli(["validate", str(path), "--no-latency", "--val-limit", "64"], capsys)
    assert code == 1 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err


# ---------------------------------------------------------------- non-finite weights and outputs

def with_head_weight(source: Path, folder: Path, value: float, preprocessing: Preprocessing,
                     everywhere: bool = False) -> Path:
    """A checkpoint like ``source`` with its first (or ``everywhere``: every) head weight set to ``value``,
    saved properly: its hash matches."""
    module, _, _ = load_deployable(source)
    weight = module.head_module[2].weight
    with torch.no_grad():
        if everywhere:
            weight.fill_(value)
        else:
            weight[0, 0] = value
    path = folder / "model.safetensors"
    save_deployable(path, module, preprocessing)
    return path


def test_nan_weights_are_refused_when_loading(classifier: Path, tmp_path: Path, preprocessing: Preprocessing,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = with_head_weight(classifier, tmp_path, float("nan"), preprocessing)
    with pytest.raises(CheckpointError, match=r"non-finite weights \(1 NaN/Inf values in 'head_module\.2\.weight'\)"):
        load_deployable(path)
    code, err = run_cli(["validate", str(path), "--no-latency", "--val-limit", "64"], capsys)
    assert code == 1 and err.count("\n") == 1 and "non-finite weights" in err  # it used to exit 0 (11.5 % top-1)


def test_inf_in_third_party_weights_is_refused(tmp_path: Path) -> None:
    state = create_model("resnet8", 10, 1).state_dict()
    state["body.0.weight"][0, 0, 0, 0] = float("inf")
    torch.save(state, tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match=r"non-finite weights \(1 NaN/Inf values in 'body\.0\.weight'\)"):
        load_external_state_dict(tmp_path / "w.pt")


def test_finite_weights_with_overflowing_outputs_fail_validation(classifier: Path, tmp_path: Path,
                                                                 preprocessing: Preprocessing,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Every head weight at 3e38 is finite, and loads; the logits overflow to Inf (or NaN)."""
    path = with_head_weight(classifier, tmp_path, 3e38, preprocessing, everywhere=True)
    module, _, _ = load_deployable(path)
    code, err = run_cli(["validate", str(path), "--no-latency", "--val-limit", "64"], capsys)
    assert code == 1 and err.count("\n") == 1, err
    assert "stage 'pytorch' gives non-finite logits (NaN/Inf) for 64 of 64 images" in err


class FakeBackend:
    """An exported model whose logits turn NaN on some rows (a broken fp16 engine, say)."""

    engine, uses_threads, max_batch, min_batch = "onnxruntime", True, None, None

    def __init__(self, name: str, bad_rows: int) -> None:
        self.name, self.bad_rows = name, bad_rows

    def predict_logits(self, x: np.ndarray) -> np.ndarray:
        logits = np.tile(np.arange(10, dtype=np.float32), (len(x), 1))
        logits[:self.bad_rows, 3] = np.nan
        return logits

    def set_threads(self, threads: int | None) -> None:
        pass


def test_non_finite_logits_name_the_stage() -> None:
    batches = [(np.zeros((8, 1, 4, 4), np.float32), np.array([9, 9, 9, 9, 0, 1, 2, 3]))]  # the fake predicts 9
    results = evaluate_backends([FakeBackend("ref", 0), FakeBackend("good", 0)], batches, "ref")
    assert results["good"].agreement == 100.0 and results["good"].top1 == 50.0
    with pytest.raises(CheckpointError, match=r"^stage 'onnx' gives non-finite logits \(NaN/Inf\) for 3 of 8 images"):
        evaluate_backends([FakeBackend("ref", 0), FakeBackend("onnx", 3)], batches, "ref")
