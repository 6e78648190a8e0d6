"""SHA-256 of what a file holds: ONNX files as they are; a .safetensors file by its content.

The safetensors library writes the metadata keys of its header in a random order per process, so two
identical trainings give different file bytes. The content hash covers the tensor names, dtypes, shapes and
bytes, and the metadata as sorted JSON: equal exactly when the checkpoints are.
    usage: python benchmarks/content_hash.py FILE...
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys


def content_hash(path: str) -> str:
    if not path.endswith(".safetensors"):
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    with open(path, "rb") as f:
        header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
        data = f.read()
    digest = hashlib.sha256(json.dumps(header.pop("__metadata__", {}), sort_keys=True).encode())
    for name in sorted(header):
        start, end = header[name]["data_offsets"]
        digest.update(json.dumps([name, header[name]["dtype"], header[name]["shape"]]).encode() + data[start:end])
    return digest.hexdigest()


if __name__ == "__main__":
    for file in sys.argv[1:]:
        print(f"{content_hash(file)}  {file}")
