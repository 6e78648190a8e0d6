"""deploy must run on a box without torch: checked by AST and by a process where torch cannot import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

ROOT = Path(__file__).resolve().parents[2]

BLOCKER = '''
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision", "compress"):
            raise ImportError(f"{name} is blocked in this test")
sys.meta_path.insert(0, Block())
'''


def test_no_module_in_deploy_imports_torch_or_compress():
    for path in (ROOT / "deploy").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert name.split(".")[0] not in ("torch", "torchvision", "compress"), f"{path.name} imports {name}"


def labels_without_torch(model: Path, images: "np.ndarray", tmp_path: Path, **load: object) -> str:
    """The labels ``deploy`` predicts for ``images`` in a process where torch and compress cannot import
    (a ``sitecustomize`` blocks them), as "3,1,4"; fails if a heavy package slipped in anyway."""
    import numpy as np

    np.save(tmp_path / "images.npy", images)
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    script = (
        "import sys, numpy as np\n"
        "import deploy\n"
        f"r = deploy.load({str(model)!r}, **{load!r})\n"
        f"logits, labels = r.predict(np.load({str(tmp_path / 'images.npy')!r}))\n"
        "assert not {'torch', 'torchvision', 'compress', 'nncf'} & {m.split('.')[0] for m in sys.modules}, 'heavy import'\n"
        "print(','.join(map(str, labels)))\n"
    )
    env = {"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_deploy_predicts_where_torch_cannot_import(onnx_model, tmp_path, raw_images):
    import deploy

    expected = deploy.load(onnx_model[0]).predict(raw_images[:5])[1]
    assert labels_without_torch(onnx_model[0], raw_images[:5], tmp_path) == ",".join(map(str, expected))
