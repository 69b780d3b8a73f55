#!/usr/bin/env bash
# The GPU check: the tests marked `gpu` and the bench/ scripts (train_speed, sweep_speed, study_speed on CUDA; plot_speed) in one go,
# a short table last.
#
#   bash bench/device_check.sh --prepare   # here (with internet to PyPI): fill .device/ (git-ignored):
#                                          #   MNIST as gzipped IDX (~11 MB) and wheels the GPU image lacks
#   bash bench/device_check.sh             # on the GPU machine (the device tool, carry: [".device"])
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE_DIR=.device

if [ "${1:-}" = "--prepare" ]; then
    mkdir -p "$DEVICE_DIR/data/MNIST/raw" "$DEVICE_DIR/wheels"
    raw=$(.venv/bin/lrdecay data | sed -n 's/^MNIST verified at //p')
    for f in "$raw"/*-ubyte; do gzip -9 -c "$f" > "$DEVICE_DIR/data/MNIST/raw/$(basename "$f").gz"; done
    # The GPU image runs Python 3.12 and has no pydantic, nor schedulefree (pure Python; its torch is there).
    pip download -q --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
        -d "$DEVICE_DIR/wheels" "pydantic>=2"
    pip download -q --no-deps -d "$DEVICE_DIR/wheels" schedulefree==1.4.1
    du -sh "$DEVICE_DIR"
    exit 0
fi

export LRDECAY_DATA="$PWD/$DEVICE_DIR/data" PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
PY=python3
OUT_DIR=${OUT:-/tmp/device_check}
mkdir -p "$OUT_DIR"
$PY -c "import pydantic" 2>/dev/null || $PY -m pip install -q --no-index --find-links "$DEVICE_DIR/wheels" pydantic
$PY -c "import schedulefree" 2>/dev/null || $PY -m pip install -q --no-deps --no-index --find-links "$DEVICE_DIR/wheels" schedulefree
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
$PY -m lrdecay_cli data

# only the files that hold gpu tests: the others import dev-only packages (hypothesis, ray) the image may lack
$PY -m pytest -q -m gpu $(grep -l "mark.gpu" tests/test_*.py) 2>&1 | tee "$OUT_DIR/gpu_tests.log"
tests=$(tail -n 1 "$OUT_DIR/gpu_tests.log")

results="$OUT_DIR/bench.tsv"
printf 'model\tdevice\tbatch\tprecision\trecipe_s\tlrdecay_s\tspeedup\ttarget\n' > "$results"
$PY bench/train_speed.py --device cuda --model cnn --batch-size 64 --record "$results"
$PY bench/train_speed.py --device cuda --model cnn --batch-size 512 --precision bf16 --skip-recipe --record "$results"
$PY bench/train_speed.py --device cuda --model mlp --batch-size 64 --record "$results"
$PY bench/sweep_speed.py --device cuda --model cnn --trials 32 --skip-sequential --record "$results"
$PY bench/sweep_speed.py --device cuda --model mlp --trials 16 --record "$results"
if $PY -c "import matplotlib" 2>/dev/null; then  # a study writes its figures at the end
    $PY bench/study_speed.py --device cuda --methods 6 --lrs 5 --budgets 1,2 --limit 60000 --record "$results"
fi
plot_line="plot: matplotlib missing on this machine"
if $PY -c "import matplotlib" 2>/dev/null; then  # plot needs no GPU; run here so every bench/ script runs
    plot_line=$($PY bench/plot_speed.py 2>&1 | tail -n 1)
fi

echo
echo "GPU tests: $tests"
echo "$plot_line"
column -t -s $'\t' "$results"
