import pytest
import torch
from torch import nn
from torchvision import models as tvm

from compress.errors import CheckpointError, UnknownNameError
from compress.models import MODELS, create_model, make_spec
from compress.models.weights import load_state_into
from compress.registry import Registry

SMALL = 28


@pytest.mark.parametrize("name", MODELS.names())
@pytest.mark.parametrize("channels", [1, 3])
def test_model_contract_small_input(name: str, channels: int) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, in_channels=channels, image_size=SMALL).eval()
    x = torch.randn(2, channels, SMALL, SMALL)
    with torch.no_grad():
        fmap = model.features(x)
        logits = model.head(fmap)
        assert torch.allclose(model(x), logits)
    assert fmap.dim() == 4 and fmap.shape[:2] == (2, model.feature_channels)
    assert fmap.shape[2] >= 2 and fmap.shape[3] >= 2, "small-input adaptation must keep a spatial map"
    assert logits.shape == (2, 7)
    assert (model.num_classes, model.in_channels) == (7, channels)
    assert model.classifier.out_features == 7 and model.classifier.in_features > 0


@pytest.mark.parametrize("name,expected", [("resnet18", (512, 7)), ("mobilenet_v2", (1280, 7)),
                                           ("shufflenet_v2_x1_0", (1024, 7)), ("efficientnet_b0", (1280, 7))])
def test_torchvision_full_size_keeps_imagenet_stem(name: str, expected: tuple[int, int]) -> None:
    model = create_model(name, 10, 3, image_size=224).eval()
    assert not model.spec.small_input
    with torch.no_grad():
        fmap = model.features(torch.randn(1, 3, 224, 224))
    assert fmap.shape[1:] == (expected[0], expected[1], expected[1])


def test_small_input_decided_by_image_size_or_flag() -> None:
    assert make_spec("resnet50", 10, 3, image_size=32).small_input
    assert not make_spec("resnet50", 10, 3, image_size=224).small_input
    assert not make_spec("resnet50", 10, 3, image_size=32, small_input=False).small_input
    assert make_spec("resnet8x4", 10, 3, image_size=224).small_input  # CIFAR family is always small-input


@pytest.mark.parametrize("typed,canonical", [("mobilenetv2", "mobilenet_v2"), ("MobileNet-V2", "mobilenet_v2"),
                                             ("resnet50", "resnet50"), ("WRN-40-4", "wrn_40_4"),
                                             ("shufflenetv2", "shufflenet_v2_x1_0")])
def test_names_as_users_type_them(typed: str, canonical: str) -> None:
    assert MODELS.canonical(typed) == canonical


def test_unknown_name_suggests() -> None:
    with pytest.raises(UnknownNameError, match=r"unknown model 'mobilenet_v22'.*did you mean 'mobilenet_v2'"):
        MODELS.canonical("mobilenet_v22")


def test_registering_a_name_twice_is_an_error() -> None:
    registry: Registry[int] = Registry("thing")
    registry.add("a_b", 1)
    with pytest.raises(ValueError, match="registered twice"):
        registry.add("a_b", 2)
    with pytest.raises(ValueError, match="clashes"):
        registry.add("other", 3, "a-b")


def test_torchvision_state_dict_loads_into_wrapper() -> None:
    torch.manual_seed(0)
    reference = tvm.resnet18(num_classes=10).eval()
    model = create_model("resnet18", 10, 3, image_size=224).eval()
    load_state_into(model, reference.state_dict(), "test")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), reference(x), atol=1e-5)


def test_rgb_stem_folds_into_grey_model() -> None:
    torch.manual_seed(0)
    reference = tvm.mobilenet_v2(num_classes=10).eval()
    model = create_model("mobilenet_v2", 10, 1, image_size=224).eval()
    load_state_into(model, reference.state_dict(), "test")
    grey = torch.rand(2, 1, 96, 96)
    with torch.no_grad():  # a grey image is r = g = b, so summing the RGB kernel is exact
        assert torch.allclose(model(grey), reference(grey.expand(-1, 3, -1, -1)), atol=1e-4)


def test_new_head_only_when_allowed() -> None:
    source = create_model("resnet8", 100, 1).state_dict()
    target = create_model("resnet8", 10, 1)
    with pytest.raises(CheckpointError, match=r"classifier .* 100 .*10 classes|with 10 classes"):
        load_state_into(target, source, "w.pt")
    skipped = load_state_into(target, source, "w.pt", allow_new_head=True)
    assert skipped == ["head_module.2.weight", "head_module.2.bias"]
    assert torch.equal(target.state_dict()["body.0.weight"], source["body.0.weight"])


def test_other_architecture_is_refused() -> None:
    with pytest.raises(CheckpointError, match="not for resnet8|do not fit resnet8"):
        load_state_into(create_model("resnet8", 10, 1), create_model("wrn_16_1", 10, 1).state_dict(), "w.pt")


def test_parameter_counts_match_published_sizes() -> None:
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    # CIFAR ResNet-20 has 0.27 M parameters, ResNet-32x4 7.4 M (SimKD/CRD tables); mobilenet_v2 3.50 M at 1000 classes
    assert abs(count(create_model("resnet20", 10, 3)) / 1e6 - 0.27) < 0.01
    assert abs(count(create_model("resnet32x4", 100, 3)) / 1e6 - 7.43) < 0.05
    assert abs(count(create_model("mobilenet_v2", 1000, 3, image_size=224)) / 1e6 - 3.50) < 0.01
    assert isinstance(create_model("resnet8", 10, 1).classifier, nn.Linear)
