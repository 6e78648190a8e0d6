"""Finding where a classifier's features end and its head begins, for any ``nn.Module``.

The project's models expose ``features(x) -> map`` and ``head(map) -> logits``; a module from elsewhere
is cut into those two parts here, in this order:

1. an explicit ``split``: a module name (``"layer4"``: its output is the feature map) or a pair of
   callables ``(features, head)`` (e.g. ``(net.forward_features, net.forward_head)``);
2. timm's API: ``forward_features`` / ``forward_head``;
3. tracing ``forward`` with ``torch.fx`` for a global pooling followed by a final ``Linear``
   (torchvision's ResNet, MobileNet, EfficientNet, ShuffleNet and most hand-written classifiers).

Each part becomes an ``fx.GraphModule`` that holds only the submodules it uses (the same parameter
objects as the original module), and the head is split once more into everything before the final
``Linear`` and that ``Linear``: shared-classifier methods reuse it as ``g = (W, b)``.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Union

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from compress.errors import ConfigError

SplitArg = Union[str, tuple[Callable[..., Any], Callable[..., Any]], None]

HOW_TO_SPLIT = ("give the split explicitly: split='layer4' (the submodule whose output is the last feature map) "
                "or split=(features_fn, head_fn)")


class SplitError(ConfigError):
    """The feature/head split of a module could not be found."""


@dataclass
class Split:
    """A classifier cut in two: ``classifier(pre_logits(body(x)))`` equals the module's output."""

    body: nn.Module
    pre_logits: nn.Module
    classifier: nn.Linear


class _Call(nn.Module):
    """Traces ``fn(x)`` with ``owner`` as the root, so submodules are named as in ``owner``."""

    def __init__(self, owner: nn.Module, fn: Callable[..., Any]) -> None:
        super().__init__()
        self.owner = owner
        self.fn = fn

    def forward(self, x: torch.Tensor) -> Any:
        return self.fn(x)


@functools.lru_cache(maxsize=None)
def _switches_on_training(cls: type) -> bool:
    """Whether a module class's forward reads ``self.training`` (BatchNorm/Dropout/DropPath variants)."""
    try:
        return "self.training" in inspect.getsource(cls.forward)
    except (OSError, TypeError):
        return False


class _Tracer(fx.Tracer):
    """Keeps as one call every Linear (the classifier must stay a module) and every module that behaves
    differently in train and eval mode, so the traced parts still switch with ``train()``/``eval()``;
    ``keep`` (a split's module name, as ``owner.NAME``) stays one call too, so its output is one node."""

    def __init__(self, keep: str | None = None) -> None:
        super().__init__()
        self.keep = keep

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return (super().is_leaf_module(m, module_qualified_name) or isinstance(m, nn.Linear)
                or _switches_on_training(type(m)) or module_qualified_name == self.keep)


def _trace(owner: nn.Module, fn: Callable[..., Any], what: str, keep: str | None = None) -> fx.GraphModule:
    """The graph of ``fn`` as a GraphModule rooted at ``owner`` (names without the wrapper's ``owner.``).

    Traced in eval mode: a Python branch on ``self.training`` outside a leaf module (``_Tracer``) would be
    frozen at its inference value.
    """
    was_training = owner.training
    owner.eval()
    try:
        graph = _Tracer(None if keep is None else f"owner.{keep}").trace(_Call(owner, fn))
    except Exception as exc:  # fx raises TraceError, TypeError, AssertionError... on data-dependent code
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SplitError(f"cannot trace the {what} of {type(owner).__name__} with torch.fx ({first[:120]}); "
                         f"{HOW_TO_SPLIT}") from None
    finally:
        owner.train(was_training)
    for node in graph.nodes:
        if node.op in ("call_module", "get_attr") and isinstance(node.target, str) and node.target.startswith("owner."):
            node.target = node.target[len("owner."):]
    return fx.GraphModule(owner, graph, class_name=type(owner).__name__ + "Part")


def _is_global_pool(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """Average/max pooling to 1x1, as a module, a functional call or ``x.mean((2, 3))``."""
    if node.op == "call_module":
        module = modules[str(node.target)]
        if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            return module.output_size in (1, (1, 1))
        return type(module).__name__ == "SelectAdaptivePool2d"  # timm's pooling layer
    args = list(node.args[1:]) + list(node.kwargs.values())
    if node.op == "call_function" and node.target in (F.adaptive_avg_pool2d, F.adaptive_max_pool2d):
        return bool(args) and args[0] in (1, (1, 1), [1, 1])
    if node.target == "mean" or (node.op == "call_function" and node.target is torch.mean):
        return bool(args) and isinstance(args[0], (list, tuple)) and sorted(int(d) % 4 for d in args[0]) == [2, 3]
    return False


def _final_linear(graph: fx.Graph, modules: dict[str, nn.Module], what: str) -> fx.Node:
    """The call of the ``Linear`` whose result the graph returns."""
    output = next(n for n in graph.nodes if n.op == "output")
    result = output.args[0]
    if isinstance(result, fx.Node) and result.op == "call_module" and isinstance(modules[str(result.target)], nn.Linear):
        return result
    raise SplitError(f"the {what} does not end with a Linear layer (it returns {getattr(result, 'name', result)!r}); "
                     f"{HOW_TO_SPLIT}")


def _pool_input(graph: fx.Graph, modules: dict[str, nn.Module], linear: fx.Node) -> fx.Node:
    """Walk back from the classifier through one-input layers to the global pooling; return its input."""
    node = linear.args[0]
    while isinstance(node, fx.Node) and node.op != "placeholder":
        if _is_global_pool(node, modules):
            return node.args[0]  # type: ignore[return-value]
        inputs = [n for n in node.all_input_nodes if n.op != "get_attr"]
        if len(inputs) != 1:
            break
        node = inputs[0]
    raise SplitError("found no global pooling (AdaptiveAvgPool2d, adaptive_avg_pool2d or mean over H, W) before "
                     f"the final Linear; {HOW_TO_SPLIT}")


def _subgraph(source: fx.GraphModule, start: fx.Node | None, end: fx.Node) -> fx.GraphModule:
    """The nodes that compute ``end`` as a GraphModule, with ``start`` (or the input) as its one input.

    Fails when a node needs a value from outside the part (the two halves of a split must meet in one tensor).
    """
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    if start is not None:
        env[start] = graph.placeholder("feature_map")
    stack, seen = [end], set()
    while stack:
        node = stack.pop()
        if node in seen or node in env:
            continue
        seen.add(node)
        stack.extend(node.all_input_nodes)
    for node in source.graph.nodes:  # graph order is a topological order
        if node in seen:
            if node.op == "placeholder" and start is not None:
                raise SplitError(f"the head uses the input image besides the feature map ('{node.name}'); {HOW_TO_SPLIT}")
            env[node] = graph.node_copy(node, lambda n: env[n])
    graph.output(env[end])
    return fx.GraphModule(source, graph, class_name=source.__class__.__name__)


def _split_head(head: fx.GraphModule, what: str) -> tuple[nn.Module, nn.Linear]:
    modules = dict(head.named_modules())
    linear = _final_linear(head.graph, modules, what)
    placeholder = next(n for n in head.graph.nodes if n.op == "placeholder")
    before = _subgraph(head, placeholder, linear.args[0])  # type: ignore[arg-type]
    return before, modules[str(linear.target)]  # type: ignore[return-value]


def _split_traced(module: nn.Module, split: str | None) -> Split:
    traced = _trace(module, module.forward, "forward", keep=split)
    modules = dict(traced.named_modules())
    linear = _final_linear(traced.graph, modules, "forward")
    if split is None:
        feature = _pool_input(traced.graph, modules, linear)
    else:
        calls = [n for n in traced.graph.nodes if n.op == "call_module" and n.target == split]
        if not calls:
            children = ", ".join(f"'{name}'" for name, _ in module.named_children())
            raise SplitError(f"split='{split}' names no submodule that forward() calls; top-level submodules: "
                             f"{children}")
        feature = calls[-1]
    body = _subgraph(traced, None, feature)
    pre_logits = _subgraph(traced, feature, linear.args[0])  # type: ignore[arg-type]
    return Split(body, pre_logits, modules[str(linear.target)])  # type: ignore[arg-type]


def has_timm_api(module: nn.Module) -> bool:
    return callable(getattr(module, "forward_features", None)) and callable(getattr(module, "forward_head", None))


def find_split(module: nn.Module, split: SplitArg = None) -> Split:
    """Cut ``module`` into body, pre-logits and final ``Linear`` (see the module docstring for the order)."""
    if isinstance(split, str) or (split is None and not has_timm_api(module)):
        return _split_traced(module, split)
    if split is None:
        features_fn, head_fn = module.forward_features, module.forward_head
    elif isinstance(split, tuple) and len(split) == 2 and all(callable(f) for f in split):
        features_fn, head_fn = split
    else:
        raise SplitError(f"split must be a submodule name or a pair of callables, got {type(split).__name__}; "
                         f"{HOW_TO_SPLIT}")
    body = _trace(module, features_fn, "features")
    pre_logits, classifier = _split_head(_trace(module, head_fn, "head"), "head")
    return Split(body, pre_logits, classifier)


__all__ = ["HOW_TO_SPLIT", "Split", "SplitArg", "SplitError", "find_split", "has_timm_api"]
