"""What several commands share: option tables built from the registries, help texts, small parsers."""

from __future__ import annotations

import functools
import inspect
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar

import typer

from compress import logs
from compress.errors import UsageError
from compress.export.backends import BACKENDS
from compress.validate.gates import GATES

if TYPE_CHECKING:
    from compress.distill.config import SettingInfo
    from compress.validate import GateResult

from compress.cli.app import logger

Command = TypeVar("Command", bound=Callable[..., Any])


def _progress(wanted: bool) -> bool:
    """Progress bars are diagnostics too: -q hides them."""
    return wanted and logs.stderr_level() <= logging.INFO


JSON_HELP = "Print the result as JSON on stdout (diagnostics stay on stderr)."
JUNIT_HELP = "Write the gates as JUnit XML to FILE: one test case per gate and stage (CI test reports)."
SUMMARY_HELP = "Append the gates as a GitHub-flavoured Markdown table to FILE, e.g. \"$GITHUB_STEP_SUMMARY\"."


def _publish(suite: str, gates: list[GateResult], junit: Optional[Path], summary: Optional[Path]) -> None:
    from compress.validate import publish_gates

    publish_gates({suite: gates}, junit, summary, name=f"{suite} (compress gates)")
    for path in (junit, summary):
        if path is not None:
            logger.info(f"gates: {path}")


def _ints(text: Optional[str], option: str) -> tuple[int, ...]:
    if not text:
        return ()
    try:
        return tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise UsageError(f"{option} takes comma-separated whole numbers, e.g. 150,180,210; got '{text}'") from None


def _with_options(extra: list[inspect.Parameter], after: str) -> Callable[[Command], Command]:
    """Insert options built from a table into a command's signature, after parameter ``after``; typer reads
    the signature and passes them as keyword arguments. A new export backend or gate needs no edit here."""

    def add(command: Command) -> Command:
        signature = inspect.signature(command)
        own = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        at = [p.name for p in own].index(after) + 1
        command.__signature__ = signature.replace(parameters=own[:at] + extra + own[at:])  # type: ignore[attr-defined]
        return command

    return add


def _option(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    # positional-or-keyword like typer's own options; typer passes every option by keyword
    return inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default, annotation=annotation)


# `compress export --onnx/--no-onnx --int8 --trt ...`: one flag per export backend
BACKEND_FLAGS = [_option(b.name, bool, typer.Option(b.default, f"--{b.flag}/--no-{b.flag}" if b.default else f"--{b.flag}",
                                                    help=b.help)) for b in BACKENDS.values()]
# `compress validate --min-agreement 99.9 ...`: one option per gate
GATE_OPTIONS = [_option(g.name, Optional[float], typer.Option(None, f"--{g.name.replace('_', '-')}", help=f"Gate: {g.help}"))
                for g in GATES.values()]


MODEL_FACTORY_HELP = ("For a student built from your code (compress.model): its factory as package.module:function. "
                      "compress imports it (and runs it) only when you pass it here, never from a checkpoint.")
COMPILE_HELP = ("torch.compile the training step: off, default, reduce-overhead (adds CUDA graphs; for small, "
                "launch-bound models on a GPU) or max-autotune. The first steps pay the compilation.")
SYNC_BN_HELP = ("Under torchrun on GPUs: BatchNorm statistics over the global batch (SyncBatchNorm) instead of per "
                "GPU; worth it when each GPU gets fewer than ~32 images. Also COMPRESS_SYNC_BN=1.")
WORKERS_HELP = ("DataLoader worker processes for imagefolder data (JPEG decoding); give a GPU about one per 500 "
                "images/s it trains at. Fashion-MNIST and CIFAR need none: they live on the device.")
DATA_HELP = "Dataset: fashion-mnist (default, Debian package), cifar10, cifar100, imagefolder, synthetic."
LABELS_PER_CLASS_HELP = ("Few labels: keep the labels of N training images per class (a fixed, class-balanced subset); the "
                         "other training images become unlabelled. Label terms (cross-entropy) see only labelled images, "
                         "teacher terms (KL, feature MSE) see all; the student alone trains on the labelled ones.")

HOLDOUT_HELP = ("An honest protocol: hold out N training images per class (labelled ones, with --labels-per-class) as "
                "the validation split the best epoch is chosen on, and read the test split once, at the end "
                "(summary.json test_top1).")
# Written out (not read from compress.data.shift) so --help does not import torch; a test keeps it in step.
SHIFT_HELP = ("Show the model images as a device camera does, training and test alike: camera (darker, lower "
              "contrast, blur of 1 px, sensor noise). Seeded; the preprocessing stays the clean data's.")
SHIFT_SEED_HELP = "Which sensor noise --shift draws (the same for an image in every run)."

SETTING_SHORT = {"factor": "-r"}  # one-letter aliases of method-setting options


def _setting_option(name: str, info: SettingInfo) -> inspect.Parameter:
    """The option of one method setting: its name, type and help all from the methods' config fields."""
    from compress.distill.settings import bare_type

    kind, flag = bare_type(info.hint), name.replace("_", "-")
    decls = [f"--{flag}/--no-{flag}" if kind is bool else f"--{flag}"]
    decls += [SETTING_SHORT[name]] if name in SETTING_SHORT else []
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=Optional[kind],
                             default=typer.Option(None, *decls, help=info.help, show_default=False))


def _with_method_options(after: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Adds one option per method setting (``compress.distill.config.settings_table``) after the option
    ``after``; the values the user gave reach the command as ``settings`` (name -> value)."""
    from compress.distill.config import settings_table  # torch-free: the config classes, not the methods

    table = {name: info for name, info in settings_table().items() if info.follows is None}

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
                  for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != "settings"]
        at = [p.name for p in params].index(after) + 1
        params[at:at] = [_setting_option(name, info) for name, info in table.items()]

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> None:
            given = {name: kwargs.pop(name) for name in table}
            command(**kwargs, settings={k: v for k, v in given.items() if v is not None})

        wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]  # what typer reads
        wrapper.__annotations__ = {}
        return wrapper

    return decorate


BASELINE_HELP = ("A report.json of an earlier validation (compress validate --out, compress run): fail when a stage's "
                 "top-1 dropped or its speed-up over the reference shrank by more than the baseline gates allow.")
