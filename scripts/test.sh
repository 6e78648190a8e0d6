#!/usr/bin/env bash
# Set up (if needed) and run the test suite. GPU/TensorRT tests are skipped with a reason on CPU machines.
# With arguments, they go to one pytest run (e.g. `bash scripts/test.sh tests/export -k parity`). Without,
# each test package runs in a pytest process of its own: OpenVINO's and PyTorch's native thread pools in one
# long-lived process crashed it (SIGSEGV) after a few hundred tests on the CI machine, and a crash must not
# take the rest of the suite with it. The exit status is the first failing run's.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit $?
if [ $# -gt 0 ]; then
  exec .venv/bin/python -m pytest -q "$@"
fi
status=0
for part in tests/data tests/deploy tests/distill tests/export tests/models tests/pipeline tests/validate \
            "tests/test_*.py"; do
  echo "== pytest $part"
  # shellcheck disable=SC2086  # the last part is a glob
  .venv/bin/python -m pytest -q $part || { code=$?; [ $status -ne 0 ] || status=$code; }
done
exit $status
