"""Logging like other tools: diagnostics through `logging` on stderr, results alone on stdout, -v/-q, --log-file,
the library's own default when nobody configures logging, and shell completion."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from compress import logs
from compress.cli import options as cli
from compress.cli import main

TRAIN = ["train-teacher", "--model", "resnet8", "--epochs", "1", "--train-limit", "128", "--val-limit", "64",
         "--batch-size", "64", "--no-progress"]


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    main(args)  # these calls succeed: a failure raises SystemExit and fails the test
    captured = capsys.readouterr()
    return captured.out, captured.err


@pytest.fixture(autouse=True)
def default_logging() -> None:
    yield
    logs.configure()  # what the next test expects: the library's default


def test_training_logs_to_stderr_and_prints_no_result_on_stdout(fmnist_available: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out, err = run_cli([*TRAIN, "--out", str(tmp_path / "a")], capsys)
    assert out == ""
    assert re.search(r"^epoch 1/1  loss \d+\.\d{4}  train .*val top-1", err, re.M)
    assert re.search(r"^done: last top-1 \d+\.\d\d%", err, re.M)
    assert "debug:" not in err


def test_quiet_hides_information_and_the_log_file_keeps_everything(fmnist_available: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "train.log"
    out, err = run_cli(["-q", "--log-file", str(log), *TRAIN, "--out", str(tmp_path / "q")], capsys)
    assert out == "" and err == ""
    lines = log.read_text().splitlines()
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} DEBUG   compress\.cli: compress 0\.1\.0, command "
                    r"train-teacher", lines[0])
    assert any(re.match(r"^\S+ \S+ INFO    compress\.train: epoch 1/1  loss", line) for line in lines), lines


def test_verbose_adds_debug_lines(capsys: pytest.CaptureFixture[str]) -> None:
    out, err = run_cli(["-v", "list", "projectors"], capsys)
    assert out.split() == ["bottleneck", "depthwise", "linear", "pointwise"]
    assert err.startswith("debug: compress 0.1.0, command list, Python 3.")


def test_levels_prefixes_and_one_handler_however_often_it_is_configured(capsys: pytest.CaptureFixture[str]) -> None:
    for _ in range(3):
        main(["list", "projectors"])
    handlers = logging.getLogger("compress").handlers
    assert sum(type(h).__name__ == "_Stderr" for h in handlers) == 1
    capsys.readouterr()
    logs.configure(logs.level_for(verbose=0, quiet=1))
    log = logs.get_logger("compress.somewhere")
    log.info("hidden")
    log.warning("careful")
    log.error("broken")
    assert capsys.readouterr().err == "warning: careful\nerror: broken\n"
    assert logs.level_for(0, 2) == logging.ERROR and logs.level_for(3, 0) == logging.DEBUG
    assert cli._progress(True) is False  # -q hides progress bars too
    logs.configure()
    assert cli._progress(True) is True and cli._progress(False) is False  # --no-progress still works


def test_the_library_logs_to_stderr_without_any_configuration(fmnist_available: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from compress.data import DataConfig, load_data
    from compress.distill.base import Supervised
    from compress.models import create_model
    from compress.train import TrainConfig, fit

    data = load_data(DataConfig(batch_size=64, train_limit=128, val_limit=64))
    fit(Supervised(create_model("resnet8", 10, 1)), data, TrainConfig(epochs=1), tmp_path / "lib", progress=False)
    captured = capsys.readouterr()
    assert captured.out == "" and re.search(r"^epoch 1/1 ", captured.err, re.M)


def test_shell_completion_is_on(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--show-completion", "bash"])  # the script to source, e.g. from ~/.bashrc
    assert exit_info.value.code == 0
    assert "_COMPRESS_COMPLETE=complete_bash" in capsys.readouterr().out
    monkeypatch.setenv("_COMPRESS_COMPLETE", "complete_bash")
    monkeypatch.setenv("COMP_WORDS", "compress va")
    monkeypatch.setenv("COMP_CWORD", "1")
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 0 and capsys.readouterr().out.split() == ["validate"]
