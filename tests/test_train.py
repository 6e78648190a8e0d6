import json
from pathlib import Path

import pytest
import torch

from compress.checkpoint import load_tensors
from compress.data import DataConfig, load_data
from compress.deployable import load_deployable
from compress.distill.base import Supervised
from compress.errors import CheckpointError, ConfigError, TrainingDiverged
from compress.models import create_model
from compress.record import CheckpointRecord, RunInfo, RunSummary
from compress.train import TrainConfig, evaluate, fit, lr_factor

QUIET = dict(log=lambda msg: None, progress=False)


def small_data(limit: int = 2048) -> object:
    return load_data(DataConfig(batch_size=64, train_limit=limit, val_limit=1000))


def test_short_real_training_reaches_stated_accuracy(tmp_path: Path, fmnist_available: Path) -> None:
    torch.manual_seed(0)
    data = small_data(4000)
    method = Supervised(create_model("resnet8", 10, 1))
    result = fit(method, data, TrainConfig(epochs=3, lr=0.1, seed=0), tmp_path / "run", **QUIET)
    # resnet8 on 4,000 real images for 3 epochs: measured 75.2 % (1 thread) and 74.5 % (2 threads);
    # chance is 10 %. The margin covers other CPUs' float summation order, not a broken loop.
    assert result.last_top1 >= 70.0
    assert result.best_top1 >= result.last_top1 and 1 <= result.best_epoch <= 3
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3] and rows[-1]["val_top1"] == result.last_top1
    module, pre, _ = load_deployable(tmp_path / "run")
    record = CheckpointRecord.read(tmp_path / "run")
    assert record.metrics is not None and record.metrics.top1 == result.last_top1 and record.epoch == 3
    assert record.metrics.best_top1 == result.best_top1 and record.metrics.best_epoch == result.best_epoch
    assert pre.mean == (0.2860,) and pre.class_names[9] == "Ankle boot" and record.preprocessing == pre
    assert record.train_config is not None and record.train_config["lr"] == 0.1
    assert record.environment["torch"] == torch.__version__ and record.run is None  # fit was told nothing about it
    summary = RunSummary.read(tmp_path / "run")
    assert (summary.last_top1, summary.best_top1, summary.epochs) == (result.last_top1, result.best_top1, 3)
    assert summary.model_sha256 == record.sha256
    # without a holdout the validation split is the test split, and nothing is read a second time
    assert result.test_top1 is None and summary.validation == "test" and summary.test_top1 is None
    assert "test_top1" not in json.loads((tmp_path / "run" / "summary.json").read_text())


def _run(out: Path, interrupt_after: int | None = None, epochs: int = 2) -> Supervised:
    torch.manual_seed(123)
    method = Supervised(create_model("resnet8", 10, 1))  # resnet8 has no dropout; RNG state still restored

    def log(msg: str) -> None:
        if interrupt_after is not None and msg.startswith(f"epoch {interrupt_after}/"):
            raise KeyboardInterrupt  # as if the process were stopped right after the epoch's checkpoint

    cfg = TrainConfig(epochs=epochs, lr=0.05, seed=3, deterministic=True, warmup_epochs=0.5)
    fit(method, small_data(1024), cfg, out, log=log, progress=False)
    return method


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path: Path, fmnist_available: Path) -> None:
    straight = _run(tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "resumed", interrupt_after=1)
    torch.manual_seed(999)  # a different init: everything must come from the checkpoint
    method = Supervised(create_model("resnet8", 10, 1))
    cfg = TrainConfig(epochs=2, lr=0.05, seed=3, deterministic=True, warmup_epochs=0.5)
    fit(method, small_data(1024), cfg, tmp_path / "resumed", resume=True, **QUIET)
    for (name, a), b in zip(straight.state_dict().items(), method.state_dict().values()):
        assert torch.equal(a, b), name
    a, _ = load_tensors(tmp_path / "straight" / "model.safetensors")
    b, _ = load_tensors(tmp_path / "resumed" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def _holdout_run(out: Path, resume: bool = False, stop_after: int | None = None) -> tuple[Supervised, object]:
    torch.manual_seed(5)
    method = Supervised(create_model("resnet8", 10, 1))
    data = load_data(DataConfig(batch_size=64, train_limit=1024, val_limit=300, holdout_per_class=10))

    def log(msg: str) -> None:
        if stop_after is not None and msg.startswith(f"epoch {stop_after}/"):
            raise KeyboardInterrupt

    fit(method, data, TrainConfig(epochs=3, lr=0.05, seed=1, deterministic=True), out, resume=resume, log=log,
        progress=False)
    return method, data


def test_with_a_holdout_the_test_split_is_read_once_with_the_epoch_chosen_on_validation(
        tmp_path: Path, fmnist_available: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        _holdout_run(tmp_path / "run", stop_after=1)
    method, data = _holdout_run(tmp_path / "run", resume=True)  # the best epoch may be one saved before the resume
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    best, _, record = load_deployable(tmp_path / "run" / "best.safetensors")
    on_test, on_val = evaluate(best, data.test), evaluate(best, data.val)  # type: ignore[attr-defined]
    assert summary["validation"] == "holdout" and summary["test_epoch"] == summary["best_epoch"] == record.epoch
    assert (summary["test_top1"], summary["test_top5"]) == (on_test["top1"], on_test["top5"])
    assert summary["best_top1"] == on_val["top1"]  # chosen on the 100 held-out images
    assert RunSummary.read(tmp_path / "run").test_top1 == on_test["top1"]
    last, _ = load_tensors(tmp_path / "run" / "model.safetensors")  # the deployable keeps the last epoch's weights
    assert all(torch.equal(last[k], v) for k, v in method.deployable().state_dict().items())


def test_existing_run_needs_resume_and_resume_needs_a_run(tmp_path: Path, fmnist_available: Path) -> None:
    data = small_data(256)
    fit(Supervised(create_model("resnet8", 10, 1)), data, TrainConfig(epochs=1), tmp_path / "r", **QUIET)
    with pytest.raises(ConfigError, match="already holds a training run: pass --resume"):
        fit(Supervised(create_model("resnet8", 10, 1)), data, TrainConfig(epochs=1), tmp_path / "r", **QUIET)
    with pytest.raises(ConfigError, match="already finished 1 epochs; raise --epochs"):
        fit(Supervised(create_model("resnet8", 10, 1)), data, TrainConfig(epochs=1), tmp_path / "r", resume=True, **QUIET)
    with pytest.raises(ConfigError, match="nothing to resume"):
        fit(Supervised(create_model("resnet8", 10, 1)), data, TrainConfig(epochs=1), tmp_path / "new", resume=True, **QUIET)


def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(tmp_path: Path, fmnist_available: Path) -> None:
    data = small_data(256)
    out = tmp_path / "r"
    fit(Supervised(create_model("resnet8", 10, 1)), data, TrainConfig(epochs=1), out, **QUIET)
    good = (out / "model.safetensors").read_bytes()

    class Exploding(Supervised):
        def forward(self, images, labels):  # type: ignore[no-untyped-def]
            output = super().forward(images, labels)
            output.loss = output.loss * float("nan")
            return output

    method = Exploding(create_model("resnet8", 10, 1))
    with pytest.raises(TrainingDiverged, match=r"loss became nan at epoch 2 step 1 .*parts .*ce.*last good checkpoint: .*model.safetensors"):
        fit(method, data, TrainConfig(epochs=2), out, resume=True, **QUIET)
    assert (out / "model.safetensors").read_bytes() == good


@pytest.mark.parametrize("kwargs,message", [
    ({"epochs": 0}, "epochs must be at least 1"),
    ({"lr": -0.1}, "learning rate must be a positive number"),
    ({"lr": 0.0}, "learning rate must be a positive number"),
    ({"schedule": "multistep"}, "needs milestones"),
    ({"schedule": "linear"}, "cosine, multistep or constant"),
    ({"warmup_epochs": 20}, "shorter than training"),
])
def test_bad_training_numbers(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**kwargs).validate()


def test_learning_rate_schedules() -> None:
    cosine = TrainConfig(epochs=10, warmup_epochs=1)
    assert lr_factor(cosine, 0.5) == pytest.approx(0.5)
    assert lr_factor(cosine, 1.0) == pytest.approx(1.0)
    assert lr_factor(cosine, 5.5) == pytest.approx(0.5)
    assert lr_factor(cosine, 10.0) == pytest.approx(0.0, abs=1e-12)
    steps = TrainConfig(epochs=240, schedule="multistep", milestones=(150, 180, 210))
    assert [lr_factor(steps, e) for e in (0, 149.9, 150, 180, 239)] == pytest.approx([1, 1, 0.1, 0.01, 0.001])


def test_resume_uses_this_machines_optimizer_kernels(tmp_path: Path) -> None:
    """A state saved on a GPU (fused SGD) resumes on a CPU with the CPU's foreach kernels, and vice versa."""
    from compress.resume import TrainingState, load_training_state, save_training_state
    from compress.step import make_optimizer

    settings = {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4}
    torch.manual_seed(0)
    method = Supervised(create_model("resnet8", 10, 1, 16))
    saved = make_optimizer(method, **settings)
    method(torch.randn(4, 1, 16, 16), torch.tensor([0, 1, 2, 3])).loss.backward()
    saved.step()
    for group in saved.param_groups:  # as a CUDA run writes them
        group["fused"], group["foreach"] = True, None
    save_training_state(tmp_path, method, saved, TrainingState(1, [{"epoch": 1}], -1.0, 0, {}, {}))
    fresh = make_optimizer(method, **settings)
    assert all(g["foreach"] is True and not g["fused"] for g in fresh.param_groups)
    assert load_training_state(tmp_path, method, fresh, {}).epoch == 1
    assert all(g["foreach"] is True and not g["fused"] for g in fresh.param_groups)
    momentum = [fresh.state[p]["momentum_buffer"] for p in method.parameters()]
    assert all(torch.equal(m, saved.state[p]["momentum_buffer"]) for m, p in zip(momentum, method.parameters()))


class _StopAt(Exception):
    pass


def _stop_at(method: torch.nn.Module, step: int, error: type[BaseException]) -> None:
    """Make ``method``'s ``step``-th forward call (counting from 1) raise ``error``."""
    calls = {"n": 0}
    forward = method.forward

    def counting(images: torch.Tensor, labels: torch.Tensor):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == step:
            raise error
        return forward(images, labels)

    method.forward = counting  # type: ignore[method-assign]


def _kd_run(out: Path, stop_at_step: int | None = None, resume: bool = False) -> torch.nn.Module:
    """KD on partly labelled data (mixed batches); optionally stopped in the middle of epoch 2."""
    from compress.distill import DistillConfig, build_method

    torch.manual_seed(7 if not resume else 999)  # a resumed run must take everything from the checkpoint
    method = build_method(DistillConfig(method="kd"), create_model("resnet8", 10, 1), [create_model("resnet8", 10, 1)])
    data = load_data(DataConfig(batch_size=64, train_limit=1024, val_limit=500, labels_per_class=10, seed=3))
    if stop_at_step is not None:  # as if the process died mid-epoch, after the last epoch's checkpoint
        _stop_at(method, stop_at_step, _StopAt)
    cfg = TrainConfig(epochs=2, lr=0.05, seed=3, deterministic=True)
    fit(method, data, cfg, out, resume=resume, **QUIET)
    return method


def test_resume_mid_epoch_with_unlabelled_data_gives_the_same_weights(tmp_path: Path, fmnist_available: Path) -> None:
    straight = _kd_run(tmp_path / "straight")
    with pytest.raises(_StopAt):
        _kd_run(tmp_path / "resumed", stop_at_step=16 + 5)  # 16 steps per epoch: 5 steps into epoch 2
    resumed = _kd_run(tmp_path / "resumed", resume=True)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    rows = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert 0 < rows[-1]["train_top1"] <= 100  # over the labelled images of the mixed batches


def test_resume_refuses_a_run_with_other_settings_and_names_what_differs(tmp_path: Path, fmnist_available: Path) -> None:
    data = small_data(256)
    info = RunInfo(role="teacher", model={"name": "resnet8"}, method={"name": "none", "label_smoothing": 0.0},
                   data={"name": "fashion-mnist", "train_limit": 256})
    fit(Supervised(create_model("resnet8", 10, 1)), data, TrainConfig(epochs=1), tmp_path / "r", info=info, **QUIET)
    assert CheckpointRecord.read(tmp_path / "r").run == info  # the record reads back what fit was told
    other = RunInfo(**{**info.__dict__, "method": {"name": "none", "label_smoothing": 0.1}})
    with pytest.raises(CheckpointError, match=r"trained with a different method \(.*'label_smoothing': 0.0.* vs "
                                              r".*'label_smoothing': 0.1.*\); use the original settings"):
        fit(Supervised(create_model("resnet8", 10, 1)), data, TrainConfig(epochs=2), tmp_path / "r", resume=True,
            info=other, **QUIET)


def _supervised_run(out: Path, stop_at_step: int | None = None, resume: bool = False,
                    save_every_s: float = 1e-9) -> torch.nn.Module:
    """resnet8 on augmented Fashion-MNIST (pad-crop + flip), one thread; a state saved after every step."""
    torch.manual_seed(5 if not resume else 999)  # a resumed run must take everything from the state file
    method = Supervised(create_model("resnet8", 10, 1))
    data = load_data(DataConfig(batch_size=64, train_limit=640, val_limit=200, augment=True, seed=2))
    if stop_at_step is not None:  # Ctrl-C in the middle of a step
        _stop_at(method, stop_at_step, KeyboardInterrupt)
    cfg = TrainConfig(epochs=2, lr=0.05, seed=2, deterministic=True, warmup_epochs=0.5, save_every_s=save_every_s)
    fit(method, data, cfg, out, resume=resume, **QUIET)
    return method


def test_resume_in_the_middle_of_an_epoch_gives_the_same_weights(tmp_path: Path, fmnist_available: Path) -> None:
    """Issue 22: Ctrl-C in a long epoch loses at most ``save_every_s`` of it, and resuming from the mid-epoch
    state gives bit-identical weights (10 steps per epoch: stopped in step 4 of epoch 2)."""
    from compress.errors import Interrupted
    from compress.resume import read_state_record

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        straight = _supervised_run(tmp_path / "straight", save_every_s=0)
        with pytest.raises(Interrupted, match=r"stopped in epoch 2 of 2; epoch 1 is saved; --resume goes on from "
                                              r"epoch 2 after step 3$"):
            _supervised_run(tmp_path / "resumed", stop_at_step=10 + 4)
        state = read_state_record(tmp_path / "resumed")
        assert state is not None and state.epoch == 1 and state.in_epoch is not None and state.in_epoch.step == 3
        assert state.in_epoch.sums[1] == 3 * 64  # images of the three steps done
        resumed = _supervised_run(tmp_path / "resumed", resume=True)
    finally:
        torch.set_num_threads(threads)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    rows = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    straight_rows = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    for row, reference in zip(rows, straight_rows):  # the epoch's sums carried across the interruption
        assert row["train_loss"] == reference["train_loss"] and row["train_top1"] == reference["train_top1"]
        assert row["val_top1"] == reference["val_top1"]
    assert read_state_record(tmp_path / "resumed").in_epoch is None  # type: ignore[union-attr]


def test_an_interruption_before_the_first_mid_epoch_save_says_so(tmp_path: Path, fmnist_available: Path) -> None:
    from compress.errors import Interrupted

    with pytest.raises(Interrupted, match=r"stopped before its first epoch was saved"):
        _supervised_run(tmp_path / "r", stop_at_step=4, save_every_s=0)
    with pytest.raises(Interrupted, match=r"stopped in epoch 1 of 2; no epoch is complete; --resume goes on from "
                                          r"epoch 1 after step 2$"):
        _supervised_run(tmp_path / "s", stop_at_step=3)


def test_save_every_is_checked() -> None:
    with pytest.raises(ConfigError, match=r"save-every \(seconds\) must be"):
        TrainConfig(save_every_s=-1).validate()


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("enabled", [True, False])
def test_progress_on_a_pipe_is_a_line_every_30_seconds(enabled: bool) -> None:
    """Issue 22: progress refreshes by time, not by step count; on a pipe it is a plain line; -q hides it."""
    from compress.progress import ProgressBar

    clock, lines = _Clock(), []
    bar = ProgressBar(100, 2, 4, enabled, 32.0, lines.append, terminal=False, clock=clock)
    sums = torch.tensor([2.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    for step in range(1, 101):
        clock.now += 0.5  # 2 steps a second, 64 images a second
        sums += torch.tensor([2.0 * 32, 32, 16, 32], dtype=torch.float64)
        bar.update(step, sums)
    bar.close()
    if not enabled:
        assert lines == []
        return
    assert len(lines) == 1  # 50 s: one line at 30 s
    assert lines[0] == ("epoch 2/4 step 60/100 (60%) 64 img/s, loss 2.000, epoch ETA 20s, run ETA 2m00s"), lines


def test_progress_lines_appear_during_training_on_a_pipe(tmp_path: Path, fmnist_available: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import compress.progress as progress_module

    monkeypatch.setattr(progress_module, "LINE_EVERY_S", 0.0)  # every step is due
    for progress in (True, False):
        lines: list[str] = []
        torch.manual_seed(0)
        fit(Supervised(create_model("resnet8", 10, 1)), small_data(256), TrainConfig(epochs=1),
            tmp_path / str(progress), log=lines.append, progress=progress)
        steps = [line for line in lines if " step " in line]
        if progress:
            assert [line.split(" (")[0] for line in steps] == [f"epoch 1/1 step {s}/4" for s in range(1, 5)]
            assert all("img/s, loss" in line and "run ETA" in line for line in steps)
        else:
            assert steps == []
