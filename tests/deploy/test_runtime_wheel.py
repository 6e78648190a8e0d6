"""The edge runtime is its own distribution: its wheel installs into a fresh venv without torch and classifies.

Builds ``compress-edge-runtime`` from ``deploy/pyproject.toml``, installs it with its declared dependencies
(numpy, onnxruntime, Pillow: from the package index or pip's cache) into a new virtual environment, and
runs its console script there on an exported model. A dependency that only the main distribution brings
(torch, compress) would make the classification fail or show up in the venv.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(*cmd: str | Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    return result


@pytest.mark.slow
def test_runtime_wheel_installs_without_torch_and_classifies(onnx_model, raw_images, tmp_path: Path) -> None:
    from PIL import Image

    # build from a copy, so no build/ or egg-info litter lands in the source folder
    source = tmp_path / "src" / "deploy"
    shutil.copytree(ROOT / "deploy", source, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", source, "-w", tmp_path / "wheels")
    wheels = list((tmp_path / "wheels").glob("compress_edge_runtime-*.whl"))
    assert len(wheels) == 1

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    _run(python, "-m", "pip", "install", "-q", "--disable-pip-version-check", wheels[0])

    installed = _run(python, "-m", "pip", "list", "--format=freeze").stdout.lower()
    assert "compress-edge-runtime==0.1.0" in installed
    for absent in ("torch", "torchvision", "compress-edge=="):
        assert not any(line.startswith(absent) for line in installed.splitlines()), f"{absent} came with the runtime"
    assert "onnxruntime" in installed and "numpy" in installed and "pillow" in installed

    path, _ = onnx_model
    image = tmp_path / "shirt.png"
    Image.fromarray(raw_images[0]).save(image)
    # run outside the source tree so the installed copy (not ../deploy) is the one imported
    result = subprocess.run([str(venv / "bin" / "compress-deploy"), "classify", str(path), str(image), "--top", "3"],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    import deploy

    runner = deploy.load(path)
    logits, _ = runner.predict(raw_images[:1])
    best = int(np.argmax(logits[0]))
    names = runner.class_names
    expected = names[best] if best < len(names) else str(best)
    assert result.stdout.startswith(f"{image}: {expected} "), result.stdout
    assert len(result.stdout.split(": ", 1)[1].split(", ")) == 3
