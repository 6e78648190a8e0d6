#!/usr/bin/env bash
# Set up (if needed) and run the main job on the embedded default dataset (Fashion-MNIST): train a
# teacher, distil a student four ways (none, KD, SimKD, ATSC), export the ATSC student to ONNX and INT8,
# validate accuracy and latency with gates, and write runs/fashion_mnist/report.{md,json,png}.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/compress run pipelines/fashion_mnist.yaml "$@"
