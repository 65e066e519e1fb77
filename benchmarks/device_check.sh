#!/usr/bin/env bash
# GPU check of issue 14, one script, at most 8 minutes on a machine with one GPU.
#
#   bash benchmarks/device_check.sh                     # needs a CUDA GPU
#   bash benchmarks/device_check.sh --allow-cpu --tiny  # tests this script on a CPU
#
# Prints, each part under its own time limit (budgets below: 475 s in all on
# TensorFlow, 470 s on JAX):
#   1. X3D-S forward and training step, tsnet_keras against the plain PyTorch
#      X3D (and PyTorchVideo's when installed), batch 8 and 32, float32 and
#      mixed precision (bfloat16 compute on both sides) -> benchmarks/bench_x3d.py
#   2. PARSEC search step against the fixed model's training step at crop 160,
#      sampled architecture -> benchmarks/bench_search.py --parts a
#   3. decode throughput of video_dataset against the X3D-S training step
#      -> benchmarks/bench_data.py
#   4. the exact depthwise 3D convolution methods on the GPU, forward + backward
#      -> benchmarks/bench_depthwise.py (which method depthwise_conv3d should use there)
#
# The Keras backend is KERAS_BACKEND when set, else TensorFlow when it sees the
# GPU, else JAX when it does. On JAX (a GPU machine without TensorFlow) part 1
# runs the same layers on JAX, part 2 is skipped (the search loop needs
# TensorFlow) and part 3 times decoding alone (bench_data.py --no-tf).
# Without a GPU it stops at once with exit status 3 and says what is missing.
# --allow-cpu skips that check; --tiny shrinks every size (4 x 32^2 clips,
# batch 2, the tests' tiny search space, 2 short videos, no model in part 3)
# and gives each part up to 10 minutes, so the script's logic can be tested on
# a CPU (the models are still built and traced in full: minutes when loaded).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

allow_cpu=0
tiny=0
for arg in "$@"; do
  case "$arg" in
    --allow-cpu) allow_cpu=1 ;;
    --tiny) tiny=1 ;;
    -h | --help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "device_check.sh: unknown argument '$arg' (expected --allow-cpu, --tiny)" >&2; exit 2 ;;
  esac
done

export TF_CPP_MIN_LOG_LEVEL=3 PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PYTHON=${PYTHON:-$(command -v python || command -v python3)}

no_gpu() {
  echo "device_check.sh: no usable GPU: $1" >&2
  echo "  (run on the device machine, or pass --allow-cpu [--tiny] to test the script on a CPU)" >&2
  exit 3
}

if [ "$allow_cpu" = 0 ]; then
  command -v nvidia-smi > /dev/null || no_gpu "nvidia-smi not found"
  nvidia-smi -L 2> /dev/null | grep -q '^GPU' || no_gpu "nvidia-smi lists no GPU"
  if [ -z "${KERAS_BACKEND:-}" ]; then
    if timeout 120 "$PYTHON" -c 'import sys, tensorflow as tf; sys.exit(not tf.config.list_physical_devices("GPU"))' 2> /dev/null; then
      export KERAS_BACKEND=tensorflow
    elif KERAS_BACKEND=jax timeout 120 "$PYTHON" -c 'import sys, jax, keras; sys.exit(jax.default_backend() != "gpu")' 2> /dev/null; then
      export KERAS_BACKEND=jax
    else
      no_gpu "neither TensorFlow nor JAX (with keras) sees a GPU (a CUDA build of either is needed)"
    fi
  fi
  timeout 60 "$PYTHON" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' \
    2> /dev/null || no_gpu "torch.cuda.is_available() is False (a CUDA build of torch is needed)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
export KERAS_BACKEND=${KERAS_BACKEND:-tensorflow}
echo "Keras backend: $KERAS_BACKEND"

if [ "$tiny" = 1 ]; then
  x3d_args=(--frames 4 --crop 32 --batches 2 --repeats 2)
  search_args=(--space tiny --crop 16 --batch 4 --heldout-batch 2 --steps 2)
  data_args=(--videos 2 --clips 4 --batch 2 --repeats 1 --skip-model)
  depthwise_args=(--repeats 2)
  budgets=(600 600 600 300 300)  # a CPU shared with other jobs: generous, no 8-minute promise
else
  x3d_args=(--batches 8 32 --repeats 6)
  search_args=(--crop 160 --batch 8 --heldout-batch 4 --steps 5)
  data_args=(--videos 6 --clips 32 --batch 8 --repeats 1)
  depthwise_args=(--repeats 10)
  budgets=(95 95 150 90 45)
fi
if [ "$KERAS_BACKEND" != tensorflow ]; then
  data_args+=(--no-tf)
  [ "$tiny" = 1 ] || budgets=(205 205 0 30 30)  # JAX: part 2 skipped, its time to part 1 (XLA compiles each batch size, about 90 s)
fi

failed=0
run_part() {  # budget_seconds title command...
  local budget=$1 title=$2
  shift 2
  echo
  echo "== $title (limit ${budget} s) =="
  local start=$SECONDS
  timeout --kill-after=10 "$budget" "$@" 2>&1 | grep --line-buffered -v -E '^(WARNING: All log|I0000|E0000|W0000|To enable)'
  local status=${PIPESTATUS[0]}
  if [ "$status" = 124 ] || [ "$status" = 137 ]; then
    echo "!! $title: stopped after ${budget} s"; failed=1
  elif [ "$status" != 0 ]; then
    echo "!! $title: failed (exit $status)"; failed=1
  fi
  echo "-- $title: $((SECONDS - start)) s"
}

run_part "${budgets[0]}" "1a. X3D-S float32" \
  "$PYTHON" benchmarks/bench_x3d.py "${x3d_args[@]}" --policy float32
run_part "${budgets[1]}" "1b. X3D-S mixed precision (bfloat16)" \
  "$PYTHON" benchmarks/bench_x3d.py "${x3d_args[@]}" --policy mixed_bfloat16
if [ "$KERAS_BACKEND" = tensorflow ]; then
  run_part "${budgets[2]}" "2. search step vs fixed step" \
    "$PYTHON" benchmarks/bench_search.py --parts a --archs sampled "${search_args[@]}"
else
  echo; echo "== 2. search step vs fixed step: skipped, the search loop runs on TensorFlow (Keras backend here: $KERAS_BACKEND) =="
fi
run_part "${budgets[3]}" "3. decode throughput vs training step" \
  "$PYTHON" benchmarks/bench_data.py "${data_args[@]}"
run_part "${budgets[4]}" "4. depthwise 3D convolution methods" \
  "$PYTHON" benchmarks/bench_depthwise.py --backends "$KERAS_BACKEND" "${depthwise_args[@]}"

echo
echo "device_check.sh: done in ${SECONDS} s$([ "$failed" = 1 ] && echo ', with failures above')"
exit "$failed"
