"""SHA-256 of what a model file holds, independent of how the library happened to write it.

* ``.safetensors``: the safetensors library writes the metadata keys of its header in a random order per
  process, so two identical trainings give different bytes. Hashed: tensor names, dtypes, shapes and bytes,
  and the metadata as sorted JSON.
* ``.onnx``: the exporter records per node where it came from (source file paths, stack traces, Python
  class paths), which differs between two checkouts of the same code; ``compress`` drops it since issue 14.
  Hashed: the model with node ``metadata_props`` and doc strings removed, serialised deterministically.
Equal hashes mean equal weights, graphs and metadata.
    usage: python benchmarks/content_hash.py FILE...
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys


def _safetensors_hash(path: str) -> str:
    with open(path, "rb") as f:
        header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
        data = f.read()
    digest = hashlib.sha256(json.dumps(header.pop("__metadata__", {}), sort_keys=True).encode())
    for name in sorted(header):
        start, end = header[name]["data_offsets"]
        digest.update(json.dumps([name, header[name]["dtype"], header[name]["shape"]]).encode() + data[start:end])
    return digest.hexdigest()


def _onnx_hash(path: str) -> str:
    import onnx

    model = onnx.load(path)
    for node in model.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    return hashlib.sha256(model.SerializeToString(deterministic=True)).hexdigest()


def content_hash(path: str) -> str:
    if path.endswith(".safetensors"):
        return _safetensors_hash(path)
    if path.endswith(".onnx"):
        return _onnx_hash(path)
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


if __name__ == "__main__":
    for file in sys.argv[1:]:
        print(f"{content_hash(file)}  {file}")
