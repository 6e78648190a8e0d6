"""Gates that mean something: a speed-up read from unstable timings fails with the reason, the sanity gate
(beat chance) is on by default, and a gate asked for is judged or refused up front with one line."""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET

import pytest

from compress.cli import main
from compress.errors import ConfigError, UsageError
from compress.export.timing import LatencyStats, latency_stats, unreliable
from compress.validate.accuracy import AccuracyResult
from compress.validate.gates import GateSpec, check_requested
from compress.validate.verdicts import check_gates, describe, evaluate_gates
from compress.validate.latency import LatencyConfig, benchmark
from compress.validate.results import StageResult, ValidationResult


def by_key(results):
    return {(g.stage, g.gate): g for g in results}


def point(batch: int, p50: float, blocks: list[float] | None = None) -> LatencyStats:
    return LatencyStats(batch, 2, 30, p50, p50, p50 * 1.2, p50 * 1.5, p50 * 0.9, p50 * 2, batch / (p50 / 1000),
                        1.2, blocks if blocks is not None else [p50] * 3)


def timed(reference: list[LatencyStats], onnx: list[LatencyStats], *, classes: int | None = 10,
          top1: float = 80.0) -> ValidationResult:
    stages = {"student": StageResult("student", "s.safetensors", "pytorch", accuracy=AccuracyResult(300, top1, 99.0),
                                     latency=reference),
              "onnx": StageResult("onnx", "m.onnx", "onnxruntime", accuracy=AccuracyResult(300, top1, 99.0, 100.0),
                                  latency=onnx)}
    for s, r in zip(onnx, reference):
        stages["onnx"].speedups.append({"batch_size": s.batch_size, "threads": 2, "reference_threads": 2,
                                        "speedup": r.p50_ms / s.p50_ms})
    data = {"name": "fashion-mnist", "samples": 300} | ({"num_classes": classes} if classes else {})
    return ValidationResult("student", stages, data=data)


# ------------------------------------------------------------------------------------- speed-ups from noise

def test_the_1782x_reference_fails_the_speedup_gate_with_the_reason():
    """The issue's run: PyTorch took 368 ms for one image and 31 ms for 32 in the same run."""
    result = timed([point(1, 368.0), point(32, 31.0)], [point(1, 0.2065), point(32, 3.0)])
    got = by_key(evaluate_gates(result, {"onnx": GateSpec(min_speedup=1.0)}))["onnx", "min_speedup"]
    assert got.value == pytest.approx(1782.0, rel=1e-3) and got.status == "fail" and got.margin is None
    assert got.reason == ("not meaningful: student took longer for batch 1 (368 ms) than for batch 32 (31 ms) in "
                          "the same run; rerun on a quieter machine or with a longer duration")
    assert describe(got).startswith("onnx min_speedup 1782.08x not meaningful: student took longer")


def test_a_drifting_reference_or_stage_fails_and_a_steady_one_passes():
    steady = [point(1, 4.0, [4.0, 4.4, 3.9]), point(32, 40.0)]
    drifting = [point(1, 4.0, [4.0, 3.9, 8.2]), point(32, 40.0)]  # 8.2 / 3.9 = 2.1x between blocks
    fast = [point(1, 2.0, [2.0, 2.1, 2.0]), point(32, 16.0)]
    gates = {"onnx": GateSpec(min_speedup=1.5)}
    assert by_key(evaluate_gates(timed(steady, fast), gates))["onnx", "min_speedup"].status == "pass"
    bad = by_key(evaluate_gates(timed(drifting, fast), gates))["onnx", "min_speedup"]
    assert bad.status == "fail" and "student's p50 at batch 1 moved 2.1x between timing blocks (more than 2x)" \
        in bad.reason
    stage_drifts = [point(1, 2.0, [2.0, 1.0, 2.0]), point(32, 16.0)]
    edge = by_key(evaluate_gates(timed(steady, stage_drifts), gates))["onnx", "min_speedup"]
    assert edge.status == "pass" and edge.reason == ""  # 2.0x is the limit, not above it
    stage_drifts[0].block_p50_ms = [2.0, 0.9, 2.0]
    bad = by_key(evaluate_gates(timed(steady, stage_drifts), gates))["onnx", "min_speedup"]
    assert bad.status == "fail" and bad.reason.startswith("not meaningful: onnx's p50 at batch 1 moved 2.2x")


def test_unreliable_reads_only_the_point_asked():
    stats = [point(1, 4.0), point(8, 3.0), point(32, 40.0)]
    assert unreliable("x", stats, 32, 2) == ""  # batch 32 is consistent with everything above it
    assert "took longer for batch 1 (4 ms) than for batch 8 (3 ms)" in unreliable("x", stats, 1, 2)
    assert unreliable("x", [point(1, 4.0, [])], 1, 2) == ""  # no blocks recorded (an old report): nothing to judge


def test_the_benchmark_records_every_blocks_p50_and_the_spread():
    class Clock:
        now = 0.0

        def __call__(self) -> float:
            return self.now

    class Engine:
        uses_threads, name = True, "e"

        def __init__(self, clock: Clock, costs: list[float]) -> None:
            self.clock, self.costs, self.calls = clock, costs, 0

        def set_threads(self, threads):
            pass

        def predict_logits(self, x):
            self.clock.now += self.costs[self.calls % len(self.costs)]
            self.calls += 1

    clock = Clock()
    engine = Engine(clock, [0.001] * 9 + [0.004])  # every tenth run 4x slower
    cfg = LatencyConfig(batch_sizes=(1,), threads=(2,), runs=30, blocks=3, warmup=0, pause_s=0.0)
    stats = benchmark([engine], (1, 2, 2), cfg, timer=clock, sleep=lambda s: None)["e"][0]
    assert stats.block_p50_ms == pytest.approx([1.0, 1.0, 1.0]) and stats.drift == pytest.approx(1.0)
    assert stats.spread == pytest.approx(stats.p90_ms / stats.p50_ms)
    assert latency_stats([0.001, 0.002], 1, 2, [1.0, 2.0]).to_dict()["block_p50_ms"] == [1.0, 2.0]


class _Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


class _ScriptedEngine:
    """An engine whose n-th run costs ``cost(n)`` seconds of the fake clock."""

    uses_threads = True

    def __init__(self, name: str, clock: _Clock, cost) -> None:
        self.name, self.clock, self.cost, self.calls = name, clock, cost, 0

    def set_threads(self, threads):
        pass

    def predict_logits(self, x):
        self.clock.now += self.cost(self.calls)
        self.calls += 1


def test_a_point_that_drifted_is_timed_again_and_the_steady_attempt_is_kept():
    """CI on 2026-12-07: PyTorch's p50 at batch 1 moved 2.2x across its three blocks and the gate failed on
    a 6.6x speed-up. The first attempt's third block here runs 3x slower; the second attempt is steady."""
    clock = _Clock()
    reference = _ScriptedEngine("student", clock, lambda n: 0.003 if 20 <= n < 30 else 0.001)
    onnx = _ScriptedEngine("onnx", clock, lambda n: 0.0005)
    cfg = LatencyConfig(batch_sizes=(1,), threads=(2,), runs=30, blocks=3, warmup=0, pause_s=0.0)
    stats = benchmark([reference, onnx], (1, 2, 2), cfg, timer=clock, sleep=lambda s: None)
    student, fast = stats["student"][0], stats["onnx"][0]
    assert student.attempts == fast.attempts == 2 and reference.calls == onnx.calls == 60
    assert student.block_p50_ms == pytest.approx([1.0, 1.0, 1.0]) and student.runs == 30
    assert student.p50_ms == pytest.approx(1.0) and fast.p50_ms == pytest.approx(0.5)
    result = timed([student], [fast])
    got = by_key(evaluate_gates(result, {"onnx": GateSpec(min_speedup=1.0)}))["onnx", "min_speedup"]
    assert got.status == "pass" and got.value == pytest.approx(2.0)


def test_a_point_that_keeps_drifting_fails_after_its_retries_with_the_steadiest_attempt():
    clock = _Clock()
    # every attempt's last block is slower, less so each attempt: 4x, 3x, 2.5x
    slow = {0: 0.004, 1: 0.003, 2: 0.0025}
    reference = _ScriptedEngine("student", clock, lambda n: slow[n // 30] if n % 30 >= 20 else 0.001)
    onnx = _ScriptedEngine("onnx", clock, lambda n: 0.0005)
    cfg = LatencyConfig(batch_sizes=(1,), threads=(2,), runs=30, blocks=3, warmup=0, pause_s=0.0, retries=2)
    stats = benchmark([reference, onnx], (1, 2, 2), cfg, timer=clock, sleep=lambda s: None)
    student = stats["student"][0]
    assert reference.calls == 90 and student.attempts == 3
    assert student.block_p50_ms == pytest.approx([1.0, 1.0, 2.5])  # the steadiest of the three
    got = by_key(evaluate_gates(timed([student], [stats["onnx"][0]]),
                                {"onnx": GateSpec(min_speedup=1.0)}))["onnx", "min_speedup"]
    assert got.status == "fail" and got.reason == (
        "not meaningful: student's p50 at batch 1 moved 2.5x between timing blocks (more than 2x, in each of 3 "
        "attempts); rerun on a quieter machine or with a longer duration")
    clock = _Clock()
    no_retry = LatencyConfig(batch_sizes=(1,), threads=(2,), runs=30, blocks=3, warmup=0, pause_s=0.0, retries=0)
    reference = _ScriptedEngine("student", clock, lambda n: 0.004 if n % 30 >= 20 else 0.001)
    assert benchmark([reference], (1, 2, 2), no_retry, timer=clock, sleep=lambda s: None)["student"][0].attempts == 1
    assert reference.calls == 30
    with pytest.raises(ConfigError, match="latency retries"):
        LatencyConfig(retries=-1).validate()


# --------------------------------------------------------------------------------------- beat chance

def test_a_student_at_chance_fails_the_sanity_gate_on_by_default():
    result = timed([point(1, 4.0)], [point(1, 2.0)], classes=3, top1=33.33)
    got = by_key(evaluate_gates(result, None))
    assert set(got) == {("student", "min_above_chance"), ("onnx", "min_above_chance")}
    gate = got["onnx", "min_above_chance"]
    assert gate.status == "fail" and gate.threshold == 10.0 and gate.value == pytest.approx(0.0, abs=0.01)
    assert gate.note == "chance 33.33%"
    result.teacher_top1 = 94.45
    gate = by_key(evaluate_gates(result, None))["onnx", "min_above_chance"]
    assert gate.note == "chance 33.33%; 61.12 pt below the teacher (94.45%)"
    assert describe(gate) == ("onnx min_above_chance -0.00 pt < 10.00 pt (by 10.00 pt) (chance 33.33%; 61.12 pt "
                              "below the teacher (94.45%))")


def test_the_sanity_gate_takes_a_threshold_and_turns_off_at_zero():
    result = timed([point(1, 4.0)], [point(1, 2.0)], classes=10, top1=35.0)  # 25 points above chance
    assert all(g.status == "pass" for g in evaluate_gates(result, None))
    got = by_key(evaluate_gates(result, GateSpec(min_above_chance=30.0)))  # one spec: every stage, reference too
    assert [got[s, "min_above_chance"].status for s in ("student", "onnx")] == ["fail", "fail"]
    assert evaluate_gates(result, GateSpec(min_above_chance=0)) == []
    got = by_key(evaluate_gates(result, {"onnx": GateSpec(min_above_chance=0)}))
    assert set(got) == {("student", "min_above_chance")}  # off where it was turned off only


def test_the_sanity_gate_needs_the_class_count_and_a_stage_that_ran():
    result = timed([point(1, 4.0)], [point(1, 2.0)], classes=None)  # an old report: not recorded
    assert evaluate_gates(result, None) == []
    result = timed([point(1, 4.0)], [point(1, 2.0)])
    result.stages["trt"] = StageResult("trt", "m.plan", "", status="skipped", reason="no GPU")
    assert ("trt", "min_above_chance") not in by_key(evaluate_gates(result, None))


# ------------------------------------------------------------------------- judged, or refused up front

def test_a_single_spec_judges_the_reference_when_it_is_alone():
    result = timed([point(1, 4.0)], [])
    del result.stages["onnx"]
    got = by_key(evaluate_gates(result, GateSpec(min_top1=99.0)))
    assert got["student", "min_top1"].status == "fail" and got["student", "min_top1"].value == 80.0


@pytest.mark.parametrize("gates, stages, kwargs, message", [
    (GateSpec(min_agreement=99.0), ["onnx"], {}, r"^gate min_agreement compares a model with a reference, but "
                                                 r"'onnx' is the only one validated: pass the reference too"),
    ({"student": GateSpec(max_top1_drop=1.0)}, ["student", "onnx"], {},
     r"^gate max_top1_drop is set on 'student', which is the reference it compares with"),
    (GateSpec(max_top1_drop_vs_baseline=1.0), ["student", "onnx"], {}, r"compares with a stored report: give one"),
    (GateSpec(min_speedup=1.0), ["student", "onnx"], {"latency": False}, r"needs latency measurements: drop "
                                                                         r"--no-latency or --min-speedup"),
    (GateSpec(max_p90_ms=5.0, batch_size=8), ["student", "onnx"], {},
     r"looks at batch 8, which is not timed \(batch sizes 1, 32\): add it to the batch sizes"),
    (GateSpec(min_speedup=1.0, threads=4), ["student", "onnx"], {}, r"looks at 4 threads, which are not timed"),
])
def test_a_gate_that_could_only_be_skipped_is_refused(gates, stages, kwargs, message):
    with pytest.raises(UsageError, match=message):
        check_requested(gates, stages, "student" if "student" in stages else stages[0], batch_sizes=(1, 32),
                        threads=(2,), **kwargs)


def test_gates_that_can_be_judged_are_accepted():
    check_requested(GateSpec(min_top1=50.0, max_p90_ms=5.0), ["onnx"], "onnx", batch_sizes=(1,), threads=(2,))
    check_requested(GateSpec(min_agreement=99.0, min_speedup=1.0), ["student", "onnx"], "student",
                    batch_sizes=(1, 32), threads=(2,))


def test_a_recipe_gate_on_the_reference_is_refused():
    from compress.pipeline.spec import parse_recipe

    raw = {"data": {"name": "fashion-mnist"}, "teachers": [{"checkpoint": "fashion-mnist-resnet20"}],
           "distill": {"student": "resnet8"}, "export": {"onnx": {}},
           "validate": {"gates": {"student": {"min_agreement": 99.0}}}}
    with pytest.raises(ConfigError, match=r"^validate\.gates: gate min_agreement is set on 'student', which is the "
                                          r"reference"):
        parse_recipe(copy.deepcopy(raw))
    raw["validate"] = {"batch_sizes": [32], "gates": {"onnx": {"min_speedup": 1.0}}}
    with pytest.raises(ConfigError, match=r"gate min_speedup looks at batch 1, which is not timed"):
        parse_recipe(copy.deepcopy(raw))
    raw["validate"] = {"gates": {"onnx": {"min_speedup": 1.0, "min_above_chance": 20}}}
    assert parse_recipe(copy.deepcopy(raw)).validation.parsed_gates["onnx"].thresholds == \
        {"min_above_chance": 20.0, "min_speedup": 1.0}


# ---------------------------------------------------------------------------------- the command line

def run_validate(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        main(["validate", *args])
        code = 0
    except SystemExit as stopped:
        code = int(stopped.code or 0)
    return code, capsys.readouterr().err


FAST = ["--val-limit", "64", "--batch-sizes", "1", "--threads", "1", "--duration", "0.1"]


def test_one_artifact_with_min_top1_is_judged(tiny_artifacts, tmp_path, capsys):
    """The issue's command: one ONNX model, --min-top1 99: today 0 gates, tests="0", exit 0."""
    junit = tmp_path / "j.xml"
    code, err = run_validate([str(tiny_artifacts["onnx"]), "--min-top1", "99", "--junit", str(junit), *FAST], capsys)
    assert code == 3, err
    root = ET.parse(junit).getroot()
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == ("2", "1", "0")
    cases = {case.get("name"): case for case in root.iter("testcase")}
    assert set(cases) == {"min_top1", "min_above_chance"}
    assert cases["min_top1"].find("failure").get("message").startswith("onnx min_top1 ")
    assert err.strip().splitlines()[-1].startswith("error: 1 of 2 gates did not pass (1 failed): onnx min_top1")


def test_one_artifact_with_a_relative_gate_is_a_usage_error(tiny_artifacts, tmp_path, capsys):
    junit = tmp_path / "j.xml"
    code, err = run_validate([str(tiny_artifacts["onnx"]), "--min-agreement", "99", "--junit", str(junit), *FAST],
                             capsys)
    assert code == 2
    assert err.strip().count("\n") == 0 and "gate min_agreement compares a model with a reference" in err
    assert not junit.exists()


def test_no_latency_with_a_latency_gate_is_a_usage_error(tiny_artifacts, capsys):
    code, err = run_validate([str(tiny_artifacts["student"]), str(tiny_artifacts["onnx"]), "--no-latency",
                              "--min-speedup", "1", *FAST], capsys)
    assert code == 2 and "gate min_speedup needs latency measurements: drop --no-latency" in err


def test_check_gates_counts_the_sanity_gate(tiny_artifacts, capsys):
    code, err = run_validate([str(tiny_artifacts["onnx"]), "--min-above-chance", "0", *FAST], capsys)
    assert code == 0, err  # switched off: nothing to judge, nothing failed
    check_gates([])
