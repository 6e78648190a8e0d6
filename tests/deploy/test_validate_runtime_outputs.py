"""Issue 23, item 6: what deploy refuses at run time (NaN logits, an output that is not N x classes)
reaches ``compress validate`` as one line and exit 1, not a DeployError traceback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from hostile import FASHION, pooled_onnx, write_sidecar
from onnx import helper, numpy_helper

import deploy
from compress.cli import main
from deploy import DeployError
from deploy.runners import MAX_CLASSES


def _validate(model: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["validate", str(model), "--val-limit", "16", "--no-latency"])
    return int(exit_info.value.code), capsys.readouterr().err


def _widened(path: Path, classes: int) -> Path:
    """``pooled_onnx``'s 10 logits tiled to ``classes`` at run time: the count is computed from the input's
    values (0 * max + count), so no shape inference can see it before the model runs."""
    model = onnx.load(str(path))
    graph = model.graph
    graph.node[-1].output[0] = "ten"
    graph.initializer.extend([numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
                              numpy_helper.from_array(np.array([classes // 10], np.float32), "count"),
                              numpy_helper.from_array(np.array([1], np.int64), "one")])
    graph.node.extend([helper.make_node("ReduceMax", ["input"], ["peak"], keepdims=0),
                       helper.make_node("Mul", ["peak", "zero"], ["nothing"]),
                       helper.make_node("Add", ["nothing", "count"], ["width"]),
                       helper.make_node("Cast", ["width"], ["width_int"], to=onnx.TensorProto.INT64),
                       helper.make_node("Concat", ["one", "width_int"], ["repeats"], axis=0),
                       helper.make_node("Tile", ["ten", "repeats"], ["logits"])])
    graph.output[0].type.tensor_type.shape.dim[1].dim_param = "classes"
    onnx.save(model, str(path))
    return write_sidecar(path)


def test_nan_logits_fail_validate_in_one_line(tmp_path, capsys, fmnist_available):
    model = pooled_onnx(tmp_path / "model.onnx", weight=np.full((1, 10), np.nan, np.float32), preprocessing=FASHION)
    code, err = _validate(model, capsys)
    assert code == 1 and "Traceback" not in err
    assert err.strip().splitlines() == [f"error: stage 'onnx' ({model}): the model returned non-finite logits (NaN or "
                                        "inf): its weights or preprocessing metadata are broken; re-export it with "
                                        "compress"]


def test_an_output_wider_than_any_classifier_fails_in_one_line(tmp_path, capsys, fmnist_available):
    model = _widened(pooled_onnx(tmp_path / "model.onnx", preprocessing=FASHION), 10 * MAX_CLASSES)
    runner = deploy.load(model)
    assert runner.num_classes is None  # nothing to check before it runs
    with pytest.raises(DeployError, match=r"output of shape \(2, 1000000\) for a batch of 2, not N x classes"):
        runner.predict_logits(np.zeros((2, 1, 28, 28), np.float32))
    code, err = _validate(model, capsys)
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "stage 'onnx'" in err and "output of shape (16, 1000000)" in err


def test_a_declared_bomb_output_is_refused_before_it_runs(tmp_path):
    model = pooled_onnx(tmp_path / "model.onnx", weight=np.zeros((1, MAX_CLASSES + 1), np.float32))
    proto = onnx.load(str(model))
    proto.graph.output[0].type.tensor_type.shape.dim[1].dim_value = MAX_CLASSES + 1  # declared, as exported
    onnx.save(proto, str(model))
    write_sidecar(model)
    with pytest.raises(DeployError, match=f"declares {MAX_CLASSES + 1} output classes, more than the {MAX_CLASSES}"):
        deploy.load(model)
