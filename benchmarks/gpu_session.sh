#!/usr/bin/env bash
# One device call that checks and times what needs a GPU (issue 6), for a session lent one.
#
#   device run (timeout_s 600; the steps' limits add up to 590 s):  bash benchmarks/gpu_session.sh
#   plumbing check here, on the CPU:  SMALL=1 OUT=/tmp/gpu-session bash benchmarks/gpu_session.sh
#
# The device image already has torch, safetensors, pyyaml, typer, tqdm and pytest, so the repo runs from
# its folder (PYTHONPATH=.) without installing. Every step has its own time limit and a failure does not
# stop the later ones: whatever finished comes back. At most 8 files come back; this writes 7:
#   env.txt, gpu_tests.log, train_step_<card>-{r50,small}.{json,md}, session.log
# Commit them to benchmarks/results/ with the card's name (the JSON records it too).
set -u
OUT=${OUT:?set OUT to the folder for results}
mkdir -p "$OUT"
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
if [ "${SMALL:-0}" = 1 ] && [ -x .venv/bin/python ]; then PY=${PY:-.venv/bin/python}; else PY=${PY:-python3}; fi
exec > >(tee "$OUT/session.log") 2>&1

step() {  # step SECONDS NAME COMMAND...: run with a limit, report, never abort the session
  local limit=$1 name=$2; shift 2
  local started=$SECONDS
  echo "== $name (limit ${limit}s)"
  timeout --signal=KILL "$limit" "$@"
  echo "== $name: exit $? after $((SECONDS - started))s"
}

if [ "${SMALL:-0}" = 1 ]; then
  card=cpu-plumbing
  size=(--small --device cpu --warmup 1 --steps 2 --image 8 --batch 4)
else
  card=$($PY -c "import torch; print(torch.cuda.get_device_name().split()[-1].lower() if torch.cuda.is_available() else 'nogpu')")
  size=()
fi

step 30 env bash -c "nvidia-smi -L 2>/dev/null; $PY -c 'import torch, sys; print(sys.version); print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, torch.cuda.is_available())' ; nproc" \
  > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

# 1. GPU-marked tests: the CUDA-graph step equals eager (TensorRT tests skip: no TensorRT in the image).
step 120 gpu-tests $PY -m pytest -q -m gpu -p no:cacheprovider tests/distill/test_compile.py tests/export \
  > "$OUT/gpu_tests.log" 2>&1
tail -n 5 "$OUT/gpu_tests.log"

# 2. Issue 6's targets, the decisive one first. resnet50 -> mobilenet_v2 needs the compiled step: even the
#    sum of its parts (resnet50 training 3,957 images/s, ATSC.md) leaves little room above 2,900 eagerly.
#    The small, launch-bound pair also gets the CUDA-graph mode.
step 240 resnet50-mobilenet_v2 $PY benchmarks/train_step.py "${size[@]}" --configs resnet50-mobilenet_v2-224 \
  --modes reference default default-compile simkd teacher-only --end-to-end --imagefolder --out "$OUT" --tag "$card-r50"
step 200 small-models $PY benchmarks/train_step.py "${size[@]}" --configs resnet32x4-resnet8x4-32 \
  --modes reference default default-compile default-graphs simkd teacher-only --end-to-end \
  --out "$OUT" --tag "$card-small"
echo "== done in ${SECONDS}s"
