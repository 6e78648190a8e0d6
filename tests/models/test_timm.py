"""timm models by name, as teacher and as student: contract, one step of every method, save/rebuild, ONNX parity.

Random weights and small inputs only: nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

timm = pytest.importorskip("timm")

from compress.data.preprocessing import Preprocessing  # noqa: E402
from compress.deployable import load_deployable, save_deployable  # noqa: E402
from compress.distill import DistillConfig, build_method  # noqa: E402
from compress.errors import ConfigError, UnknownNameError  # noqa: E402
from compress.models import create_model, make_spec  # noqa: E402
from compress.models.weights import load_state_into, load_weights  # noqa: E402
from compress.step import make_optimizer, train_step  # noqa: E402

SIZE = 32
# three families: a ResNet, a MobileNet, a ConvNeXt (LayerNorm head between pooling and the classifier)
RESNET, MOBILENET, CONVNEXT = "timm:resnet10t", "timm:mobilenetv3_small_050", "timm:convnext_atto"
PREP = Preprocessing(mean=(0.5,), std=(0.5,), image_size=SIZE, channels=1, source_channels=1)


def model(name: str, seed: int = 0):
    torch.manual_seed(seed)
    return create_model(name, 10, 1, SIZE)


def images(n: int = 6, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, SIZE, SIZE, generator=g), torch.randint(0, 10, (n,), generator=g)


@pytest.mark.parametrize("name", [RESNET, MOBILENET, CONVNEXT])
def test_timm_model_honours_the_contract_and_equals_timm(name: str) -> None:
    torch.manual_seed(0)
    reference = timm.create_model(name[5:], num_classes=10, in_chans=1).eval()
    ours = create_model(name, 10, 1, SIZE).eval()
    load_state_into(ours, reference.state_dict(), "timm")  # timm's own key names load
    x, _ = images()
    with torch.no_grad():
        fmap = ours.features(x)
        torch.testing.assert_close(ours.head(fmap), reference(x), rtol=0, atol=1e-5)
    assert fmap.dim() == 4 and fmap.shape[1] == ours.feature_channels
    assert ours.spec.name == name and ours.spec.to_dict() == {"name": name, "num_classes": 10, "in_channels": 1,
                                                              "small_input": False}
    assert ours.head_module[-1] is ours.classifier and ours.classifier.out_features == 10


@pytest.mark.parametrize("method,student,teachers", [
    ("none", CONVNEXT, []),
    ("kd", MOBILENET, [RESNET]),
    ("simkd", RESNET, [CONVNEXT]),
    ("atsc", MOBILENET, [CONVNEXT, "resnet8"]),  # across families: a timm and a compress teacher
    ("atsc", CONVNEXT, [MOBILENET]),
])
def test_one_training_step_of_each_method(method: str, student: str, teachers: list[str], tmp_path: Path) -> None:
    teacher_models = [model(t, seed=i + 1) for i, t in enumerate(teachers)]
    m = build_method(DistillConfig(method=method), model(student), teacher_models, SIZE)
    opt = make_optimizer(m, lr=0.05, momentum=0.9, weight_decay=5e-4)
    before = [p.detach().clone() for p in m.deployable().parameters()]
    x, y = images()
    m.train()
    out = train_step(m, opt, x, y, 0.05)
    assert torch.isfinite(out.loss) and out.logits.shape == (6, 10)
    after = list(m.deployable().parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after)), "the step changed no deployed weight"
    # the deployable rebuilds from its recorded architecture alone (timm builds the teachers' heads)
    deployable = m.deployable().eval()
    save_deployable(tmp_path / "s.safetensors", deployable, PREP)
    rebuilt, _, _ = load_deployable(tmp_path / "s.safetensors")
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), deployable(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", [RESNET, MOBILENET, CONVNEXT])
def test_onnx_export_and_parity(name: str, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from compress.export.onnx import check_parity, export_onnx

    student = model(name).eval()
    path = export_onnx(student, PREP, tmp_path / "m.onnx")
    report = check_parity(student, path, images(20, seed=4)[0], batch_sizes=(1, 3))
    assert report.ok and report.n == 20 and report.top1_agreement == 1.0


def test_atsc_student_from_timm_exports_with_parity(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from compress.export.onnx import check_parity, export_onnx

    m = build_method(DistillConfig(method="atsc"), model(MOBILENET), [model(CONVNEXT, seed=1)], SIZE)
    deployable = m.deployable().eval()
    path = export_onnx(deployable, PREP, tmp_path / "m.onnx")
    assert check_parity(deployable, path, images(12, seed=5)[0], batch_sizes=(1, 4)).ok


def test_vit_is_refused_clearly() -> None:
    with pytest.raises(ConfigError, match=r"patch-token \(ViT-style\) model: .* need a convolutional"):
        create_model("timm:vit_tiny_patch16_224", 10, 3, 224)


def test_names_tags_and_typos() -> None:
    assert make_spec("timm:resnet10t", 10, 1, SIZE).name == "timm:resnet10t"
    assert make_spec("torchvision:resnet18", 10, 3, 224).name == "resnet18"
    with pytest.raises(UnknownNameError, match=r"unknown timm model 'resnet10q'; did you mean .*timm:resnet10t"):
        make_spec("timm:resnet10q", 10, 1)
    with pytest.raises(ConfigError, match=r"--teacher-weights a1_in1k"):
        make_spec("timm:resnet50.a1_in1k", 10, 3)
    with pytest.raises(ConfigError, match="one of compress's CIFAR models"):
        make_spec("torchvision:resnet20", 10, 3)


def test_pretrained_tag_goes_to_timm(monkeypatch: pytest.MonkeyPatch) -> None:
    """--teacher-weights TAG asks timm for NAME.TAG (replaced here: tests never download)."""
    from compress.models import timm_zoo

    asked = []
    source = model(RESNET, seed=7)

    def fake(spec, tag):  # what timm would return: its own key names
        asked.append((spec.name, tag))
        return {theirs: source.state_dict()[ours] for theirs, ours in source.native_keys.items()}

    monkeypatch.setattr(timm_zoo, "timm_pretrained_state", fake)
    target = model(RESNET, seed=8)
    assert load_weights(target, "a1_in1k") == "timm:resnet10t.a1_in1k"
    assert asked == [("timm:resnet10t", "a1_in1k")]
    assert torch.equal(target.classifier.weight, source.classifier.weight)
