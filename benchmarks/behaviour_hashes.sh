#!/usr/bin/env bash
# Behaviour fingerprint for refactors (issue 14): runs the CI recipe on CPU with deterministic kernels and
# a fixed seed, then prints the SHA-256 of every student checkpoint, ONNX and INT8 file it wrote. Two
# checkouts that print the same lines train, export and quantize bit-identically. Files are hashed by
# content (benchmarks/content_hash.py: safetensors writes its header keys in a random order, and ONNX
# exporters record per-node source paths); the resume state (state.safetensors) is left out because its
# history records measured throughput.
#   usage: bash benchmarks/behaviour_hashes.sh OUT_DIR   (run from the checkout to fingerprint)
set -euo pipefail
out=${1:?usage: behaviour_hashes.sh OUT_DIR}
recipe=$(mktemp --suffix=.yaml)
trap 'rm -f "$recipe"' EXIT
sed 's/^  train: {preset: fashion-mnist, epochs: 2}.*/  train: {preset: fashion-mnist, epochs: 2, seed: 0, deterministic: true}/' \
  pipelines/fashion_mnist_ci.yaml | sed 's/^  duration_s: .*/  duration_s: 0.2/' > "$recipe"
grep -q 'deterministic: true' "$recipe" || { echo "behaviour_hashes: could not set deterministic in the recipe" >&2; exit 1; }
rm -rf "$out"
OMP_NUM_THREADS=1 ${PYTHON:-.venv/bin/python} -m compress run "$recipe" --out "$out" --no-progress >"$out.log" 2>&1 || {
  tail -20 "$out.log" >&2; exit 1; }
here=$(pwd)
cd "$out"
find . -type f \( -name '*.onnx' -o -name '*.safetensors' \) ! -name 'state.safetensors' -print0 | sort -z \
  | xargs -0 ${PYTHON:-$here/.venv/bin/python} "$here/benchmarks/content_hash.py"
