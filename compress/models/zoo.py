"""The model zoo: every model registered by name in ``MODELS``, built from a ``ModelSpec`` by ``build_model``.

The table itself needs no torch (each entry names the function that builds it): the command line lists and
checks model names without loading torch."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from compress.errors import ConfigError
from compress.models.timm_zoo import PREFIX as TIMM_PREFIX, timm_version
from compress.registry import Registry

if TYPE_CHECKING:
    from compress.models.base import ClassifierModel, ModelSpec


class Builder:
    """``compress.models.<module>.<function>(spec, **kwargs)``: the module (torch) is imported at the first
    build, so the zoo's names and families are known without torch (`compress list models`)."""

    def __init__(self, module: str, function: str, **kwargs: Any) -> None:
        self.module, self.function, self.kwargs = module, function, kwargs

    def __call__(self, spec: ModelSpec) -> ClassifierModel:
        build = getattr(import_module(f"compress.models.{self.module}"), self.function)
        return build(spec, **self.kwargs)  # type: ignore[no-any-return]


class ZooEntry:
    def __init__(self, factory: Builder, family: str, cifar_style: bool, tv_prefixes: tuple[tuple[str, str], ...] = ()):
        self.factory = factory
        self.family = family
        # CIFAR-style models are always small-input; torchvision models decide by image size.
        self.cifar_style = cifar_style
        # how torchvision state_dict key prefixes map onto ours (for loading torchvision weights)
        self.tv_prefixes = tv_prefixes


MODELS: Registry[ZooEntry] = Registry("model")

_RESNET_PREFIXES = (
    ("conv1.", "body.0."), ("bn1.", "body.1."), ("layer1.", "body.4."), ("layer2.", "body.5."),
    ("layer3.", "body.6."), ("layer4.", "body.7."), ("fc.", "head_module.2."),
)
_SHUFFLE_PREFIXES = (
    ("conv1.", "body.0."), ("stage2.", "body.2."), ("stage3.", "body.3."), ("stage4.", "body.4."),
    ("conv5.", "body.5."), ("fc.", "head_module.2."),
)


def _features_classifier_prefixes(n_classifier_layers: int) -> tuple[tuple[str, str], ...]:
    return (("features.", "body."),) + tuple((f"classifier.{i}.", f"head_module.{i + 2}.") for i in range(n_classifier_layers))


def _tv(function: str, builder: str) -> Builder:
    """A torchvision model (``torchvision.models.<builder>``) cut by ``torchvision_zoo.<function>``."""
    return Builder("torchvision_zoo", function, builder=builder)


for _name in ("resnet18", "resnet34", "resnet50", "resnet101"):
    MODELS.add(_name, ZooEntry(_tv("resnet", _name), "torchvision-resnet", False, _RESNET_PREFIXES))
MODELS.add("mobilenet_v2", ZooEntry(_tv("features_classifier", "mobilenet_v2"), "mobilenet", False,
                                    _features_classifier_prefixes(2)), "mobilenetv2")
MODELS.add("mobilenet_v3_small", ZooEntry(_tv("features_classifier", "mobilenet_v3_small"), "mobilenet", False,
                                          _features_classifier_prefixes(4)), "mobilenetv3-small")
MODELS.add("mobilenet_v3_large", ZooEntry(_tv("features_classifier", "mobilenet_v3_large"), "mobilenet", False,
                                          _features_classifier_prefixes(4)), "mobilenetv3-large")
MODELS.add("efficientnet_b0", ZooEntry(_tv("features_classifier", "efficientnet_b0"), "efficientnet", False,
                                       _features_classifier_prefixes(2)), "efficientnet-b0")
MODELS.add("shufflenet_v2_x1_0", ZooEntry(_tv("shufflenet", "shufflenet_v2_x1_0"), "shufflenet", False,
                                          _SHUFFLE_PREFIXES), "shufflenetv2")

for _depth in (8, 14, 20, 32, 44, 56, 110):
    MODELS.add(f"resnet{_depth}", ZooEntry(Builder("cifar", "cifar_resnet", depth=_depth, widths=(16, 16, 32, 64)),
                                          "cifar-resnet", True))
MODELS.add("resnet8x4", ZooEntry(Builder("cifar", "cifar_resnet", depth=8, widths=(32, 64, 128, 256)), "cifar-resnet",
                                 True))
MODELS.add("resnet32x4", ZooEntry(Builder("cifar", "cifar_resnet", depth=32, widths=(32, 64, 128, 256)),
                                  "cifar-resnet", True))
for _depth, _widen in ((16, 1), (16, 2), (40, 1), (40, 2), (40, 4), (28, 10)):
    MODELS.add(f"wrn_{_depth}_{_widen}", ZooEntry(Builder("cifar", "wide_resnet", depth=_depth, widen=_widen), "wrn",
                                                  True))
# CIFAR VGGs: the convolution widths of each stage (compress.models.cifar.cifar_vgg)
VGG_CONFIGS: dict[str, list[list[int]]] = {
    "vgg8": [[64], [128], [256], [512], [512]],
    "vgg11": [[64], [128], [256, 256], [512, 512], [512, 512]],
    "vgg13": [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
}
for _name, _config in VGG_CONFIGS.items():
    MODELS.add(_name, ZooEntry(Builder("cifar", "cifar_vgg", config=_config), "vgg", True))


SMALL_INPUT_BELOW = 64  # px: torchvision stems downsample 4x, too much for 28-32 px images


TORCHVISION_PREFIX = "torchvision:"


def canonical_name(name: str) -> str:
    """A user-typed model name as recorded: a zoo name (``torchvision:NAME`` is accepted for torchvision's
    families) or ``timm:NAME``. User-code models (``python:``) are built from Python, not by name."""
    if name.startswith(TIMM_PREFIX):
        from compress.models.timm_zoo import canonical_timm_name

        return canonical_timm_name(name)
    if name.startswith(TORCHVISION_PREFIX):
        canonical = MODELS.canonical(name[len(TORCHVISION_PREFIX):])
        if MODELS.get(canonical).cifar_style:
            raise ConfigError(f"'{canonical}' is one of compress's CIFAR models, not a torchvision one: pass it "
                              f"without the prefix (--model {canonical})")
        return canonical
    if name.startswith("python:"):
        raise ConfigError(f"'{name}' is a model from user code: build it in Python with compress.model(factory, ...)")
    from compress.weights import SHIPPED

    if name.strip().lower() in SHIPPED:
        raise ConfigError(f"'{name}' is a trained checkpoint shipped with compress, not an architecture: use it as "
                          f"a teacher (--teacher {name}, or {{checkpoint: {name}}} in a recipe)")
    return MODELS.canonical(name)


def source_of(name: str) -> str:
    """Where a model comes from, for listings: torchvision, timm, compress (the CIFAR families) or python."""
    if ":" in name:
        return name.split(":", 1)[0]
    return "compress" if MODELS.get(name).cifar_style else "torchvision"


def model_listing() -> list[tuple[str, str, str]]:
    """(name, where it comes from, family and aliases) for `compress list models`; timm's models are too many
    to list. The checkpoints shipped with compress follow, as teachers usable by name (with their top-1)."""
    from compress.weights import shipped_listing

    rows = []
    for name in MODELS.names():
        aliases = MODELS.aliases(name)
        note = f" (also: {', '.join(aliases)})" if aliases else ""
        rows.append((name, source_of(name), MODELS.get(name).family + note))
    version = timm_version()
    timm_note = f"timm {version} installed" if version else "needs: pip install 'compress-edge[timm]'"
    shipped = [(name, "shipped", summary) for name, summary in shipped_listing()]
    return rows + [("timm:<any timm model name>", "timm", timm_note)] + shipped


def make_spec(name: str, num_classes: int, in_channels: int = 3, image_size: int | None = None,
              small_input: bool | None = None) -> ModelSpec:
    """Resolve a user-typed name into a spec; ``small_input`` defaults from the image size (zoo models;
    timm models keep their own stems)."""
    from compress.models.base import ModelSpec

    canonical = canonical_name(name)
    if num_classes < 2:
        raise ConfigError(f"num_classes must be at least 2, got {num_classes}")
    if in_channels not in (1, 3):
        raise ConfigError(f"in_channels must be 1 or 3, got {in_channels}")
    if canonical not in MODELS:
        return ModelSpec(canonical, num_classes, in_channels, False)
    entry = MODELS.get(canonical)
    if entry.cifar_style:
        small = True
    elif small_input is not None:
        small = small_input
    else:
        small = image_size is not None and image_size < SMALL_INPUT_BELOW
    return ModelSpec(canonical, num_classes, in_channels, small)


def build_model(spec: ModelSpec) -> ClassifierModel:
    """A freshly initialised model of ``spec``: from the zoo, timm, or allowed user code."""
    from compress.models.timm_zoo import build_timm
    from compress.models.user import PREFIX as USER_PREFIX, build_user_model

    if spec.name.startswith(TIMM_PREFIX):
        return build_timm(spec)
    if spec.name.startswith(USER_PREFIX):
        return build_user_model(spec)
    return MODELS.get(spec.name).factory(spec)


def create_model(name: str, num_classes: int, in_channels: int = 3, image_size: int | None = None,
                 small_input: bool | None = None) -> ClassifierModel:
    return build_model(make_spec(name, num_classes, in_channels, image_size, small_input))


__all__ = ["MODELS", "SMALL_INPUT_BELOW", "TORCHVISION_PREFIX", "VGG_CONFIGS", "Builder", "ZooEntry", "build_model", "canonical_name",
           "create_model", "make_spec", "model_listing", "source_of"]
