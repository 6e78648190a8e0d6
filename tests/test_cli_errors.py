"""The bad-input matrix: every user mistake exits 1 (2 for a usage error) with one clear line, no traceback,
nothing written."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from compress.cli import main
from compress.data import DataConfig, load_data
from compress.distill.base import Supervised
from compress.models import create_model
from compress.train import TrainConfig, fit


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory, fmnist_available: Path) -> dict[str, Path]:
    """A real tiny checkpoint, its ONNX export, and broken variants of files users pass in."""
    root = tmp_path_factory.mktemp("assets")
    torch.manual_seed(0)
    data = load_data(DataConfig(batch_size=64, train_limit=256, val_limit=256))
    fit(Supervised(create_model("resnet8", 10, 1)), data, TrainConfig(epochs=1), root / "run",
        log=lambda m: None, progress=False)
    ckpt = root / "run" / "model.safetensors"
    a: dict[str, Path] = {"ckpt": ckpt, "run": root / "run"}
    rgb = load_data(DataConfig(batch_size=64, train_limit=128, val_limit=64, channels=3))
    fit(Supervised(create_model("resnet8", 10, 3)), rgb, TrainConfig(epochs=1), root / "rgb",
        log=lambda m: None, progress=False)
    a["ckpt_rgb"] = root / "rgb" / "model.safetensors"

    truncated = root / "truncated" / "model.safetensors"
    truncated.parent.mkdir()
    truncated.write_bytes(ckpt.read_bytes()[:1000])
    shutil.copy(str(ckpt) + ".json", str(truncated) + ".json")
    a["truncated"] = truncated

    torch.save(create_model("resnet8", 100, 1).state_dict(), root / "w100.pt")
    a["w100"] = root / "w100.pt"
    torch.save(create_model("resnet8", 10, 3).state_dict(), root / "rgb10.pt")
    a["rgb10"] = root / "rgb10.pt"

    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (os.system, ("echo pwned > " + str(root / "pwned"),))

    (root / "evil.pt").write_bytes(pickle.dumps({"weight": Evil()}))
    a["evil"] = root / "evil.pt"

    from compress.artifacts import write_sidecar

    corrupt = root / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07this is not a protobuf model" * 10)
    write_sidecar(corrupt, "onnx")  # a matching hash: the file itself must be rejected
    a["corrupt_onnx"] = corrupt

    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["logits"])], "rank2",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 10])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])])
    rank2 = root / "rank2.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), rank2)
    write_sidecar(rank2, "onnx")
    a["rank2_onnx"] = rank2

    empty = root / "empty_images"
    (empty / "train").mkdir(parents=True)
    (empty / "val").mkdir()
    a["empty_folder"] = empty
    text_only = root / "text_images"
    for split in ("train", "val"):
        (text_only / split / "cat").mkdir(parents=True)
        (text_only / split / "cat" / "notes.txt").write_text("not an image")
    a["text_folder"] = text_only
    a["file"] = root / "plain_file"
    a["file"].write_text("x")
    a["recipe_typo"] = root / "typo.yaml"
    a["recipe_typo"].write_text("name: t\ndata:\n  nmae: fashion-mnist\n")
    a["recipe_type"] = root / "type.yaml"
    a["recipe_type"].write_text("name: t\ndata:\n  name: fashion-mnist\n  batch_size: lots\n")
    hostile = {  # issue 17: recipes that gave tracebacks, or were accepted although they hid a mistake
        "recipe_latin1": "name: caf\xe9\n".encode("latin-1"),
        "recipe_deep": ("name: t\ndata: " + "[" * 3000 + "]" * 3000 + "\n").encode(),
        "recipe_duplicate": b"name: t\ndata:\n  name: fashion-mnist\n  train_limit: 100\n  train_limit: 1000\n",
        "recipe_digits": ("name: t\ndata:\n  train_limit: " + "9" * 5001 + "\n").encode(),
        "recipe_inf": b"name: t\ndata: {name: fashion-mnist}\ndistill: {student: resnet8, methods: [none], "
                      b"train: {epochs: .inf}}\n",
        "recipe_50mb": b"name: t\ndata:\n  name: " + b"x" * (50 * 2**20) + b"\n",
    }
    for key, content in hostile.items():
        a[key] = root / f"{key}.yaml"
        a[key].write_bytes(content)
    return a


OUT = "{out}"  # replaced by a fresh folder path that must not exist afterwards

CASES: list[tuple[str, list[str], str]] = [
    ("unknown model", ["train-teacher", "--model", "resnet5000", "--out", OUT], r"unknown model 'resnet5000'"),
    ("unknown dataset", ["train-teacher", "--model", "resnet8", "--data", "cifar11", "--out", OUT],
     r"unknown dataset 'cifar11'.*did you mean 'cifar10'"),
    ("unknown method", ["distill", "--student", "resnet8", "--method", "atcs", "--out", OUT],
     r"unknown method 'atcs'.*did you mean 'atsc'"),
    ("unknown projector", ["distill", "--student", "resnet8", "--teacher", "{ckpt}", "--projector", "bottlenek",
                           "--out", OUT], r"unknown projector 'bottlenek'.*did you mean 'bottleneck'"),
    ("unknown precision", ["export", "{ckpt}", "--trt", "--precision", "fp8", "--out", OUT], r"unknown precision 'fp8'"),
    ("teacher has other classes", ["distill", "--student", "resnet8", "--teacher", "resnet8", "--teacher-weights",
                                   "{w100}", "--out", OUT], r"classifier .* 10 classes"),
    ("teachers with different label spaces", ["distill", "--student", "resnet8", "--teacher", "resnet8",
                                             "--teacher-weights", "{ckpt}", "--teacher", "resnet8", "--teacher-weights",
                                             "{w100}", "--out", OUT], r"teacher weights|classifier .* 10 classes"),
    ("teachers with different inputs", ["distill", "--student", "resnet8", "--teacher", "{ckpt}", "--teacher",
                                        "{ckpt_rgb}", "--out", OUT], r"same inputs|3-channel"),
    ("teacher weights count", ["distill", "--student", "resnet8", "--teacher", "resnet8", "--teacher", "resnet20",
                               "--teacher-weights", "{w100}", "--out", OUT], r"2 --teacher but 1 --teacher-weights"),
    ("method needs a teacher", ["distill", "--student", "resnet8", "--method", "kd", "--out", OUT],
     r"method 'kd' needs --teacher"),
    ("teacher without weights", ["distill", "--student", "resnet8", "--teacher", "resnet20", "--out", OUT],
     r"teacher 'resnet20' has no weights.*compress train-teacher"),
    ("negative workers", ["train-teacher", "--model", "resnet8", "--workers", "-1", "--out", OUT],
     r"--workers must be at least 0 and at most 256, got -1"),
    ("unknown compile mode", ["distill", "--student", "resnet8", "--method", "none", "--compile", "fast", "--out", OUT],
     r"compile must be one of off, default, reduce-overhead, max-autotune, got 'fast'"),
    ("wrong image size", ["train-teacher", "--model", "resnet8", "--image-size", "64", "--out", OUT],
     r"images are 28 px; --image-size 64 is only for imagefolder"),
    ("missing dataset folder", ["train-teacher", "--model", "resnet8", "--data", "imagefolder", "--data-dir",
                                "/nonexistent/images", "--out", OUT], r"'/nonexistent/images/train' does not exist"),
    ("empty dataset folder", ["train-teacher", "--model", "resnet8", "--data", "imagefolder", "--data-dir",
                              "{empty_folder}", "--out", OUT], r"has no class sub-folders"),
    ("non-image dataset folder", ["train-teacher", "--model", "resnet8", "--data", "imagefolder", "--data-dir",
                                  "{text_folder}", "--out", OUT], r"class folders but no images"),
    ("missing fashion-mnist", ["train-teacher", "--model", "resnet8", "--data-dir", "{file}", "--out", OUT],
     r"apt-get install dataset-fashion-mnist"),
    ("truncated checkpoint", ["export", "{truncated}", "--out", OUT], r"does not match the hash"),
    ("truncated checkpoint, trusted", ["export", "{truncated}", "--trust", "--out", OUT],
     r"not a readable safetensors checkpoint"),
    ("checkpoint of another architecture", ["distill", "--student", "resnet8", "--teacher", "resnet20",
                                            "--teacher-weights", "{ckpt}", "--out", OUT],
     r"holds a resnet8, not a resnet20"),
    ("code-running pickle", ["distill", "--student", "resnet8", "--teacher", "resnet8", "--teacher-weights", "{evil}",
                             "--out", OUT], r"refused to load .*could run code"),
    ("corrupt onnx", ["validate", "{corrupt_onnx}", "--no-latency"], r"corrupt\.onnx"),
    ("onnx with wrong input rank", ["validate", "{rank2_onnx}", "--no-latency"], r"rank|4-D|N, C, H, W|NCHW"),
    ("impossible tensorrt profile", ["export", "{ckpt}", "--trt", "--batch", "8,4,2", "--out", OUT],
     r"min <= opt <= max"),
    ("missing optional dependency", ["export", "{ckpt}", "--trt", "--out", OUT], r"pip install 'compress-edge\[trt\]'"),
    ("zero epochs", ["train-teacher", "--model", "resnet8", "--epochs", "0", "--out", OUT], r"epochs must be at least 1"),
    ("negative epochs", ["distill", "--student", "resnet8", "--method", "none", "--epochs", "-3", "--out", OUT],
     r"epochs must be at least 1"),
    ("zero batch size", ["train-teacher", "--model", "resnet8", "--batch-size", "0", "--out", OUT],
     r"batch-size must be at least 1"),
    ("negative learning rate", ["train-teacher", "--model", "resnet8", "--lr", "-0.1", "--out", OUT],
     r"--lr must be above 0 and at most 10, got -0\.1"),
    ("zero learning rate", ["distill", "--student", "resnet8", "--method", "none", "--lr", "0", "--out", OUT],
     r"--lr must be above 0 and at most 10, got 0\.0"),
    ("bad milestones", ["train-teacher", "--model", "resnet8", "--milestones", "a,b", "--out", OUT],
     r"--milestones takes comma-separated whole numbers"),
    ("bad channels", ["train-teacher", "--model", "resnet8", "--channels", "2", "--out", OUT], r"channels must be 1 or 3"),
    ("bad projector factor", ["distill", "--student", "resnet8", "--teacher", "{ckpt}", "--factor", "0", "--out", OUT],
     r"factor"),
    ("not a number", ["train-teacher", "--model", "resnet8", "--epochs", "ten", "--out", OUT], r"Invalid value for '--epochs'"),
    ("missing required option", ["train-teacher", "--out", OUT], r"Missing option '--model'"),
    ("output path is a file", ["train-teacher", "--model", "resnet8", "--out", "{file}"], r"is a file, not a folder"),
    ("unwritable output folder", ["train-teacher", "--model", "resnet8", "--train-limit", "64", "--out",
                                  "/proc/compress-out"], r"cannot create output folder '/proc/compress-out'"),
    ("resume without a run", ["train-teacher", "--model", "resnet8", "--train-limit", "64", "--resume", "--out", OUT],
     r"nothing to resume"),
    ("unknown calibration", ["export", "{ckpt}", "--int8", "--calib-method", "kl", "--out", OUT],
     r"unknown calibration method 'kl'"),
    ("recipe typo", ["run", "{recipe_typo}"], r"data\.nmae.*did you mean 'name'"),
    ("recipe wrong type", ["run", "{recipe_type}"], r"data\.batch_size"),
    # issue 17: numbers bounded by what is meaningful, NaN and infinities refused
    ("learning rate 1e308", ["train-teacher", "--model", "resnet8", "--lr", "1e308", "--out", OUT],
     r"--lr must be above 0 and at most 10, got 1e\+308"),
    ("learning rate nan", ["distill", "--student", "resnet8", "--method", "none", "--lr", "nan", "--out", OUT],
     r"--lr must be above 0 and at most 10, got nan"),
    ("seed 2**70", ["train-teacher", "--model", "resnet8", "--seed", str(2**70), "--out", OUT],
     r"seed must be at least 0 and at most 4294967295, got a 22-digit number"),
    ("negative seed", ["distill", "--student", "resnet8", "--method", "none", "--seed", "-1", "--out", OUT],
     r"seed must be at least 0 and at most 4294967295, got -1"),
    ("a billion epochs", ["distill", "--student", "resnet8", "--method", "none", "--epochs", "1000000000",
                          "--out", OUT],
     r"epochs must be at least 1 and at most 100000, got 1000000000"),
    ("warm-up nan", ["train-teacher", "--model", "resnet8", "--warmup", "nan", "--out", OUT],
     r"--warmup must be at least 0 and at most 100000 epochs, got nan"),
    ("weight decay inf", ["train-teacher", "--model", "resnet8", "--wd", "inf", "--out", OUT],
     r"--weight-decay must be at least 0 and at most 1, got inf"),
    ("batch size 200000", ["distill", "--student", "resnet8", "--method", "none", "--batch-size", "200000", "--out",
                           OUT], r"batch-size must be at least 1 and at most 65536, got 200000"),
    ("labelled share nan", ["train-teacher", "--model", "resnet8", "--labeled-share", "nan", "--out", OUT],
     r"--labeled-share must be above 0 and below 1, got nan"),
    ("validate duration nan", ["validate", "{ckpt}", "--duration", "nan"],
     r"duration must be above 0 and at most 3600 s, got nan"),
    ("validate duration of days", ["validate", "{ckpt}", "--duration", "1e6"],
     r"duration must be above 0 and at most 3600 s, got 1000000\.0"),
    ("validate batch size 200000", ["validate", "{ckpt}", "--batch-sizes", "1,200000"],
     r"batch sizes must be at least 1 and at most 65536, got \[1, 200000\]"),
    ("validate threads", ["validate", "{ckpt}", "--threads", "0"],
     r"thread counts must be at least 1 and at most 1024"),
    ("calibration images 2**70", ["export", "{ckpt}", "--int8", "--calibration", str(2**70), "--out", OUT],
     r"--calibration must be at least 1 and at most 100000 images, got a 22-digit number"),
    ("gate threshold nan", ["validate", "{ckpt}", "--no-latency", "--max-p90-ms", "nan"],
     r"--max-p90-ms must be above 0 and at most 3600000 ms, got nan"),
    # issue 17: an output folder that holds an input would be overwritten
    ("distill into the teacher's folder", ["distill", "--student", "resnet8", "--teacher", "{ckpt}", "--out", "{run}"],
     r"output folder '.*run' holds the input '.*run/model\.safetensors': writing there could replace it"),
    ("distill into the teacher run folder", ["distill", "--student", "resnet8", "--teacher", "{run}", "--out", "{run}"],
     r"output folder '.*run' holds the input"),
    ("distill above the teacher weights", ["distill", "--student", "resnet8", "--teacher", "resnet8",
                                           "--teacher-weights", "{ckpt}", "--out", "{run}/.."], r"holds the input"),
    ("train from the run's own weights", ["train-teacher", "--model", "resnet8", "--init", "{ckpt}", "--out", "{run}"],
     r"output folder '.*run' holds the input '.*model\.safetensors'"),
    ("export into the checkpoint's folder", ["export", "{ckpt}", "--out", "{run}"],
     r"output folder '.*run' holds the input '.*run/model\.safetensors'"),
    # issue 17: hostile recipes
    ("recipe not UTF-8", ["run", "{recipe_latin1}"], r"recipe_latin1\.yaml: not UTF-8 text \(byte 9: b'\\xe9'\)"),
    ("recipe nested 3000 deep", ["run", "{recipe_deep}"], r"line 2: values nested deeper than 32 levels"),
    ("recipe duplicate key", ["run", "{recipe_duplicate}"],
     r"line 5: key 'train_limit' appears twice in one mapping \(first on line 4\)"),
    ("recipe 5001-digit number", ["run", "{recipe_digits}"], r"line 3: a whole number of 5001 digits"),
    ("recipe inf for an integer", ["run", "{recipe_inf}"],
     r"distill\.train\.epochs: expected whole number, got a number inf"),
    ("recipe 50 MB value", ["run", "{recipe_50mb}"], r"recipe '.*recipe_50mb\.yaml' is larger than 1 MiB"),
]


# the command line itself: exit 2 (a number out of the range of compress.bounds.OPTION_BOUNDS included)
USAGE_ERRORS = {"bad milestones", "not a number", "missing required option", "negative workers", "zero epochs",
                "negative epochs", "zero batch size", "negative learning rate", "zero learning rate",
                "bad projector factor", "learning rate 1e308", "learning rate nan", "seed 2**70", "negative seed",
                "a billion epochs", "warm-up nan", "weight decay inf", "batch size 200000", "labelled share nan",
                "validate duration nan", "validate duration of days", "calibration images 2**70",
                "gate threshold nan"}


def snapshot(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


@pytest.mark.parametrize("name,argv,pattern", CASES, ids=[c[0] for c in CASES])
def test_user_mistake_gives_one_clear_line(name: str, argv: list[str], pattern: str, assets: dict[str, Path],
                                           tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    args = [a.replace(OUT, str(out)).format(**{k: str(v) for k, v in assets.items()}) for a in argv]
    before = snapshot(assets["run"])
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    captured = capsys.readouterr()
    assert exit_info.value.code == (2 if name in USAGE_ERRORS else 1), captured.err
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, captured.err
    assert captured.err.rstrip().splitlines()[-1] == errors[0], "the error is the last thing printed"
    assert "Traceback" not in captured.err + captured.out
    assert len(errors[0]) <= 600, "a value is quoted whole"
    import re

    assert re.search(pattern, errors[0]), errors[0]
    assert not out.exists(), "a failed command must not leave an output folder behind"
    assert snapshot(assets["run"]) == before, "inputs must not be modified"
    assert not (assets["evil"].parent / "pwned").exists(), "a pickle must never execute"


def test_matrix_is_large_enough() -> None:
    assert len(CASES) >= 25
