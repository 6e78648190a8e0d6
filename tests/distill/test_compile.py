"""``TrainConfig.compile``: the compiled step makes the same updates as eager, for every method."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from compress.distill import DistillConfig, build_method
from compress.errors import ConfigError, DataError
from compress.step import CompiledForward
from compress.step import train_step as loop_step
from compress.train import TrainConfig, fit

from distill_helpers import SIZE, batch, optimizer, tiny, train_step

CONFIGS = {
    "atsc": DistillConfig(),
    "atsc-reference": DistillConfig(reference=True),
    "atsc-bn": DistillConfig(teacher_adapt="bn"),
    "atsc-every2": DistillConfig(teacher_every=2),  # step 1 without, step 2 with the teacher's graph
    "simkd": DistillConfig(method="simkd"),  # beta 1: the loss Inductor folds into its own detached part
    "kd": DistillConfig(method="kd"),
    "none": DistillConfig(method="none"),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_compiled_step_updates_like_eager(name: str) -> None:
    eager = build_method(CONFIGS[name], tiny("resnet8", seed=0), [tiny("resnet14", seed=1)], SIZE)
    compiled = copy.deepcopy(eager)
    forward = CompiledForward(compiled, "default")
    opt_eager, opt_compiled = optimizer(eager), optimizer(compiled)
    compiled.train()
    initial = copy.deepcopy(eager.state_dict())
    # Two steps (the second uses momentum): ATSC's reference path is chaotic enough that, from the third
    # step on, a 1e-7 change of the weights grows to 1e-4 in eager mode too.
    for step in range(2):
        images, labels = batch(seed=step)
        expected = train_step(eager, opt_eager, images, labels)
        got = loop_step(compiled, opt_compiled, images, labels, 0.1, module=forward)
        assert got.loss.requires_grad is False or got.loss.grad_fn is not None
        assert got.loss.item() == pytest.approx(expected.loss.item(), rel=1e-5, abs=1e-6)
        assert got.parts.keys() == expected.parts.keys()
        for key in expected.parts:
            assert got.parts[key].item() == pytest.approx(expected.parts[key].item(), rel=1e-4, abs=1e-6), key
        torch.testing.assert_close(got.logits, expected.logits, rtol=1e-4, atol=1e-5)
    for (key, a), b in zip(eager.state_dict().items(), compiled.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=f"{key} differs after 2 compiled steps")
    assert any(not torch.equal(initial[key], value) for key, value in eager.state_dict().items())  # it trained


def test_fit_runs_the_compiled_step(tmp_path: Path) -> None:
    from torch._dynamo.utils import counters

    from compress.data import DataConfig, load_data

    try:
        data = load_data(DataConfig(name="fashion-mnist", train_limit=128, val_limit=64, batch_size=32))
    except DataError as exc:
        pytest.skip(f"Fashion-MNIST not installed: {exc}")
    results = {}
    for mode in ("off", "default"):
        method = build_method(DistillConfig(method="none"), tiny("resnet8", seed=3), [])
        graphs = counters["stats"]["unique_graphs"]
        cfg = TrainConfig(epochs=1, lr=0.05, device="cpu", compile=mode)
        results[mode] = fit(method, data, cfg, tmp_path / mode, progress=False, log=lambda m: None)
        compiled_graphs = counters["stats"]["unique_graphs"] - graphs
        assert (compiled_graphs > 0) == (mode != "off"), compiled_graphs
    off, on = results["off"].history[-1], results["default"].history[-1]
    assert on["train_loss"] == pytest.approx(off["train_loss"], rel=1e-4)
    assert abs(on["val_top1"] - off["val_top1"]) <= 100 / 64  # at most one of 64 images changes its answer


def test_unknown_compile_mode_is_refused() -> None:
    with pytest.raises(ConfigError, match="compile must be one of off, default, reduce-overhead, max-autotune"):
        TrainConfig(compile="fast").validate()


@pytest.mark.gpu
def test_cuda_graph_step_updates_like_eager() -> None:
    """reduce-overhead replays the step as CUDA graphs; ATSC's anchor differences must survive to the hook."""
    eager = build_method(DistillConfig(), tiny("resnet8", seed=0), [tiny("resnet14", seed=1)], SIZE).cuda()
    graphed = copy.deepcopy(eager)
    forward = CompiledForward(graphed, "reduce-overhead")
    opt_eager, opt_graphed = optimizer(eager), optimizer(graphed)
    eager.train(), graphed.train()
    for step in range(6):  # the first calls record, later ones replay
        images, labels = (t.cuda() for t in batch(seed=step))
        expected = loop_step(eager, opt_eager, images, labels, 0.1)
        got = loop_step(graphed, opt_graphed, images, labels, 0.1, module=forward)
        assert got.loss.item() == pytest.approx(expected.loss.item(), rel=1e-4, abs=1e-5)
    for (key, a), b in zip(eager.state_dict().items(), graphed.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4, msg=f"{key} differs after CUDA-graph steps")
