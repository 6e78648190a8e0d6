"""``--target cpu``: the selection on a measured table (a fake clock makes every timing exact), the candidates
and gates, and one real run that builds, measures and ships."""

from __future__ import annotations

import sys
from dataclasses import replace

import numpy as np
import pytest

from compress.errors import ConfigError, ExportError
from compress.export.int8 import Int8Options
from compress.export.target import (Measured, TargetOptions, gated_options, measure, select, target_backends)

N_IMAGES = 200
LABELS = np.arange(N_IMAGES) % 10


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class FakeRunner:
    """Takes ``ms[batch]`` of fake time per call; answers correctly except for the images in ``wrong``.
    Image i carries its index in its first pixel, so the runner knows which images it was given."""

    def __init__(self, clock: FakeClock, ms: dict[int, float], wrong: int = 0) -> None:
        self.clock, self.ms, self.wrong = clock, ms, wrong

    def predict_logits(self, x: np.ndarray) -> np.ndarray:
        self.clock.now += self.ms.get(len(x), 0.0) / 1000.0
        index = x[:, 0, 0, 0].astype(int)
        answer = np.where(index < self.wrong, (LABELS[index] + 1) % 10, LABELS[index])
        return np.eye(10, dtype=np.float32)[answer]


def _images() -> np.ndarray:
    images = np.zeros((N_IMAGES, 1, 4, 4), np.float32)
    images[:, 0, 0, 0] = np.arange(N_IMAGES)
    return images


def _measure(clock: FakeClock, runners: dict[str, FakeRunner], options: TargetOptions) -> list[Measured]:
    return measure(runners, {"onnx": "model.onnx", "int8": "model.int8.onnx"}, {"onnx": "onnxruntime", "int8":
                   "onnxruntime"}, _images(), LABELS, 1.0, options, timer=clock, sleep=clock.sleep)


def test_latency_and_throughput_pick_different_winners_on_two_backends() -> None:
    """INT8 is twice as fast at batch 1 but slower at batch 32 (made up, so both choices are visible) and
    loses one image in 200 (0.5 points): within a 1-point gate it ships for batch 1, ONNX for batch 32."""
    clock = FakeClock()
    options = TargetOptions(batch_sizes=(1, 32), rounds=3, block_s=0.01)
    runners = {"onnx": FakeRunner(clock, {1: 2.0, 32: 20.0}), "int8": FakeRunner(clock, {1: 1.0, 32: 25.0}, wrong=1)}
    table = _measure(clock, runners, options)
    onnx, int8 = table
    assert (onnx.top1, onnx.drop_points) == (1.0, 0.0) and int8.top1 == 0.995
    assert int8.drop_points == pytest.approx(0.5)
    assert onnx.p50_ms == pytest.approx({1: 2.0, 32: 20.0}) and int8.p50_ms == pytest.approx({1: 1.0, 32: 25.0})
    assert int8.ratio == pytest.approx({1: 0.5, 32: 1.25}) and onnx.ratio == pytest.approx({1: 1.0, 32: 1.0})
    assert int8.throughput[32] == pytest.approx(32 / 0.025)
    picks = select(table, options.batch_sizes, 1.0)
    assert [(p.batch, p.name) for p in picks] == [(1, "int8"), (32, "onnx")]
    assert picks[0].why == ("fastest at batch 1 of 2 candidate(s) within the 1-point top-1 gate: 0.50x the onnx "
                            "p50, top-1 -0.50 points vs the student; next onnx at 1.00x")
    # a tighter gate than INT8's loss leaves ONNX for both, and says why INT8 was passed over
    strict = select(table, options.batch_sizes, 0.25)
    assert [p.name for p in strict] == ["onnx", "onnx"]
    assert strict[0].why.endswith("over the gate: int8 (0.50 points)")


def test_the_report_shows_the_whole_table_and_which_file_ships_for_which_batch() -> None:
    from compress.export.target import Selection

    clock = FakeClock()
    options = TargetOptions(batch_sizes=(1, 32), rounds=2, block_s=0.01)
    runners = {"onnx": FakeRunner(clock, {1: 2.0, 32: 20.0}), "int8": FakeRunner(clock, {1: 1.0, 32: 25.0})}
    table = _measure(clock, runners, options)
    selection = Selection(options, 1.0, N_IMAGES, table, select(table, (1, 32), 1.0),
                          {"openvino": "'openvino' is not installed"})
    assert selection.shipped == ["int8", "onnx"]
    text = selection.to_markdown()
    assert "| int8 | onnxruntime | `model.int8.onnx` | 100.00% | +0.00 | 1.000 | 1000 | 0.50 | 25.000 | 1280 | 1.25 " \
           "| **batch 1** |" in text
    assert "| onnx | onnxruntime | `model.onnx` |" in text and "| **batch 32** |" in text
    assert "| openvino | – | not built: 'openvino' is not installed |" in text
    assert "* batch 1 (latency): **int8** — fastest at batch 1" in text
    assert "* batch 32 (throughput): **onnx** — fastest at batch 32" in text
    assert selection.to_dict()["picks"] == [{"batch": 1, "name": "int8", "why": selection.picks[0].why},
                                            {"batch": 32, "name": "onnx", "why": selection.picks[1].why}]


def test_ties_keep_the_simpler_backend_and_no_candidate_within_the_gate_is_an_error() -> None:
    same = {1: 1.0}
    table = [Measured("onnx", "model.onnx", "onnxruntime", 0.9, 0.0, same, same, same),
             Measured("openvino", "model.xml", "openvino", 0.9, 0.0, same, same, same)]
    assert select(table, (1,), 1.0)[0].name == "onnx"
    lossy = [replace(row, drop_points=3.0) for row in table]
    with pytest.raises(ExportError, match=r"no candidate stays within 1 points .*\(onnx 3.00, openvino 3.00\)"):
        select(lossy, (1,), 1.0)


def test_candidates_are_the_cpu_backends_installed_here(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("openvino")
    assert target_backends(TargetOptions()) == (["onnx", "int8", "openvino", "openvino_int8"], {})
    monkeypatch.setitem(sys.modules, "openvino", None)
    candidates, unavailable = target_backends(TargetOptions())
    assert candidates == ["onnx", "int8"] and list(unavailable) == ["openvino", "openvino_int8"]
    assert "'openvino' is not installed" in unavailable["openvino"]


def test_the_target_gate_bounds_the_int8_backends_own_gates() -> None:
    pytest.importorskip("openvino")
    from compress.export.openvino_int8 import OpenVinoInt8Options

    gated = gated_options({"int8": Int8Options(calibration=64)}, TargetOptions(max_top1_drop=0.5))
    assert gated["int8"] == Int8Options(calibration=64, max_top1_drop=0.5)
    assert gated["openvino_int8"].max_top1_drop == 0.5
    tighter = gated_options({"int8": Int8Options(max_top1_drop=0.2), "openvino_int8": OpenVinoInt8Options(
        max_top1_drop=0.1)}, TargetOptions(max_top1_drop=0.5))
    assert tighter["int8"].max_top1_drop == 0.2 and tighter["openvino_int8"].max_top1_drop == 0.1


@pytest.mark.parametrize("options, match", [
    (TargetOptions(device="gpu"), "unknown target 'gpu': choose cpu"),
    (TargetOptions(batch_sizes=(1, 1)), "distinct numbers >= 1"),
    (TargetOptions(batch_sizes=()), "distinct numbers >= 1"),
    (TargetOptions(threads=0), "target threads must be at least 1"),
    (TargetOptions(max_top1_drop=-1), "max_top1_drop must be at least 0 and below 100 points, got -1"),
    (TargetOptions(threads=1_000_000), "target threads must be at least 1 and at most 1024, got 1000000"),
    (TargetOptions(batch_sizes=(1, 10**7)), "target batch sizes must be at least 1 and at most 65536, got 10000000"),
    (TargetOptions(max_top1_drop=float("nan")), "max_top1_drop must be at least 0 and below 100 points, got nan"),
])
def test_bad_target_options(options: TargetOptions, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        options.validate()


def test_a_real_target_run_builds_measures_and_ships_the_winners(trained_checkpoint, tmp_path) -> None:
    pytest.importorskip("openvino")
    import deploy
    from compress.artifacts import read_json
    from compress.export.command import export_command
    from compress.export.onnx import OnnxOptions
    from compress.export.openvino import OpenVinoIrOptions
    from compress.export.openvino_int8 import OpenVinoInt8Options

    out = tmp_path / "out"
    target = TargetOptions(batch_sizes=(1, 8), eval_images=300, rounds=2, block_s=0.05, max_top1_drop=2.0)
    options = {"onnx": OnnxOptions(parity_images=16), "int8": Int8Options(calibration=64, eval_images=300),
               "openvino": OpenVinoIrOptions(parity_images=16),
               "openvino_int8": OpenVinoInt8Options(calibration=64, eval_images=300)}
    summary = export_command(trained_checkpoint, out, target=target, options=options, progress=False)
    chosen = summary["target"]
    assert [row["name"] for row in chosen["table"]] == ["onnx", "int8", "openvino", "openvino_int8"]
    assert chosen["not_built"] == {} and 0.3 < chosen["reference_top1"] < 0.9
    for row in chosen["table"]:
        assert set(row["p50_ms"]) == {1, 8} and all(v > 0 for v in row["p50_ms"].values())
    float_rows = [row for row in chosen["table"] if row["name"] in ("onnx", "openvino")]
    assert all(abs(row["drop_points"]) < 0.5 for row in float_rows)  # parity-checked float models: the student
    assert [p["batch"] for p in chosen["picks"]] == [1, 8]
    assert summary["int8"]["fallback"]["max_top1_drop"] == 2.0  # the target's gate reached the INT8 step
    # only the winners ship (each with its sidecar, an IR with its .bin), next to the table
    files = {row["name"]: row["file"] for row in chosen["table"]}
    shipped = {files[name] for name in chosen["shipped"]}
    assert set(summary["files"]) == shipped | {"target.md", "target.json"}
    expected = {f"{name}.json" for name in shipped} | shipped | {"target.md", "target.json"}
    expected |= {name.removesuffix(".xml") + ".bin" for name in shipped if name.endswith(".xml")}
    assert {p.name for p in out.iterdir()} == expected
    for name in shipped:
        assert deploy.load(out / name).predict_logits(np.zeros((2, 1, 28, 28), np.float32)).shape == (2, 10)
    assert read_json(out / "target.json")["shipped"] == chosen["shipped"]
    assert "## Fastest deployable for the CPU (2 threads)" in (out / "target.md").read_text()


def test_the_cli_checks_the_target_before_any_work(tmp_path, capsys) -> None:
    from compress.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["export", str(tmp_path / "model.safetensors"), "--target", "gpu", "--out", str(tmp_path / "out")])
    assert exit_.value.code == 1
    assert capsys.readouterr().err == "error: unknown target 'gpu': choose cpu\n"
    with pytest.raises(SystemExit):
        main(["export", str(tmp_path / "model.safetensors"), "--target", "cpu", "--batch-sizes", "1,x"])
    assert "--batch-sizes takes comma-separated whole numbers" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


RECIPE = {"teachers": [{"model": "resnet8", "train": {"epochs": 1}}],
          "distill": {"student": "resnet8", "methods": ["kd"]}}


def test_a_recipe_target_builds_every_candidate_with_the_gate_given_to_int8() -> None:
    pytest.importorskip("openvino")
    from compress.pipeline import parse_recipe

    spec = parse_recipe({**RECIPE, "export": {"target": "cpu", "int8": {"calibration": 64}}})
    assert spec.export.target == TargetOptions()
    assert list(spec.export.options) == ["onnx", "int8", "openvino", "openvino_int8"]
    assert spec.export.of("int8") == Int8Options(calibration=64, max_top1_drop=1.0)
    assert spec.validated_stages == ("student", "onnx", "int8", "openvino", "openvino_int8")
    assert spec.export.to_dict()["target"]["batch_sizes"] == [1, 32]
    # a candidate can be left out, and the target's own fields are typed recipe keys
    spec = parse_recipe({**RECIPE, "export": {"target": {"batch_sizes": [1, 8], "max_top1_drop": 0.5},
                                              "openvino": False}})
    assert list(spec.export.options) == ["onnx", "int8", "openvino_int8"]
    assert spec.export.target == TargetOptions(batch_sizes=(1, 8), max_top1_drop=0.5)
    assert spec.export.of("openvino_int8").max_top1_drop == 0.5
    with pytest.raises(ConfigError, match=r"^export.target: unknown target 'gpu': choose cpu"):
        parse_recipe({**RECIPE, "export": {"target": {"device": "gpu"}}})
    with pytest.raises(ConfigError, match=r"^export.target.rounds: expected whole number"):
        parse_recipe({**RECIPE, "export": {"target": {"rounds": "many"}}})


def test_the_pipeline_target_stage_measures_what_the_export_stages_built(fmnist_available, tmp_path) -> None:
    pytest.importorskip("openvino")
    from compress.artifacts import read_json
    from compress.pipeline import parse_recipe, run_pipeline

    recipe = {"name": "target", "data": {"name": "fashion-mnist", "train_limit": 512, "val_limit": 200, "workers": 0},
              "distill": {"student": "resnet8", "methods": ["none"], "train": {"epochs": 1, "batch_size": 32,
                                                                               "lr": 0.2}},
              "export": {"onnx": {"exporter": "torchscript", "parity_images": 16},
                         "int8": {"calibration": 32, "eval_images": 200, "max_float_layers": 0},
                         "openvino_int8": {"calibration": 32, "eval_images": 200},
                         "target": {"batch_sizes": [1], "eval_images": 200, "rounds": 2, "block_s": 0.05,
                                    "max_top1_drop": 50.0}}}
    lines: list[str] = []
    result = run_pipeline(parse_recipe(recipe), out=tmp_path / "run", until_stage="target", progress=False,
                          log=lines.append)
    assert {s.name: s.status for s in result.stages}["target"] == "ran"
    chosen = read_json(tmp_path / "run" / "target" / "target.json")
    assert [row["name"] for row in chosen["table"]] == ["onnx", "int8", "openvino", "openvino_int8"]
    assert chosen["images"] == 200 and len(chosen["picks"]) == 1
    assert any(f"] target: batch 1: {chosen['picks'][0]['name']} (done in " in line for line in lines)
    assert "| onnx | onnxruntime | `model.onnx` |" in (tmp_path / "run" / "target" / "target.md").read_text()
