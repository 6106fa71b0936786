#!/usr/bin/env bash
# The GPU measurements of the performance issue, in one run of at most 8 minutes, for a session
# that is lent a GPU (see benchmarks/README.md). From the repository root:
#     bash benchmarks/gpu_suite.sh            # prints everything; copies logs to $OUT if set
# It runs the EMA, recording and training benchmarks on CUDA (train_bench at CIFAR-10's full
# 45,000/5,000/10,000 size), then a short real `dyn train` on CUDA (synthetic data, 5 EMA
# networks, every record) to show the command itself works there, with a rough 180-epoch estimate. Each step has its own time limit so one slow step cannot
# eat the others'.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
py=${PYTHON:-python}
if ! $py -c "import torch, dynamics" 2>/dev/null; then
    echo "== installing dyn (train extra)"
    $py -m pip install -q -e ".[train]" || exit 1
fi
step() {  # step SECONDS NAME COMMAND...
    local limit=$1 name=$2
    shift 2
    echo "== $name (limit ${limit}s)"
    local t0=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee "$out/$name.txt"
    echo "== $name: exit ${PIPESTATUS[0]} after $((SECONDS - t0)) s"
}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee "$out/gpu.txt"
$py -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
step 60 ema $py benchmarks/ema_bench.py --device cuda
step 90 record $py benchmarks/record_bench.py --device cuda
step 240 train $py benchmarks/train_bench.py --device cuda
step 80 run $py -m dyn train --dataset synthetic --device cuda --schedule constant \
    --decay 0.9,0.99,0.999,0.9995,0.9997 --epochs 3 --no-progress --overwrite --out "$out/run.h5"
$py - "$out/run.h5" <<'PY' 2>&1 | tee "$out/estimate.txt"
import sys
from dyn import open_run
with open_run(sys.argv[1]) as run:
    m = run.metrics()
    later = m[m.epoch >= 2]["seconds"]  # epoch 1 carries cudnn autotuning and warm-up
    per = float(later.mean()) if len(later) else float(m["seconds"].iloc[-1])
    scale = 45000 / run.config["train_size"]  # rough: training and evaluation both scale with images
    print(f"dyn train on {run.config['environment'].get('device_name')}: {per:.2f} s per epoch (train + "
          f"evaluate 6 networks) on {run.config['train_size']:,} synthetic images; scaled to CIFAR-10's 45,000, "
          f"a 180-epoch run takes about {per * scale * 180 / 60:.1f} min (target < 5 min; train_bench's "
          f"full-size epoch + record figures are the precise estimate)")
PY
echo "logs in $out"
