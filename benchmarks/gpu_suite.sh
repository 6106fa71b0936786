#!/usr/bin/env bash
# The GPU measurements of the performance issue in one command of under 10 minutes (its steps' limits total 500 s), for a session
# that is lent a GPU (see benchmarks/README.md). From the repository root:
#     bash benchmarks/gpu_suite.sh             # on the GPU machine: python3, no network needed
#     bash benchmarks/gpu_suite.sh --dry-run   # the same steps on this CPU at tiny sizes (a test runs it)
# Steps, each with its own time limit so that one slow step cannot eat the others': the EMA
# update (plain and channels_last layouts, with CUDA kernel counts), training speed (train_bench
# at CIFAR-10's 45,000/5,000/10,000 size: the reference loop first, then each speed option and
# --deterministic while its time budget lasts), the recording cost (record_bench, with the TF32
# prediction flips it reports), `dyn sweep --batched` against the same runs one by one
# (sweep_bench: 15 runs), and a short real `dyn train` on synthetic data (5 EMA networks,
# every record) with a rough 180-epoch estimate.
# Logs and a small summary go to $OUT if set (at most 8 files, each small); the run file and
# everything large stay in a scratch folder that is deleted at the end.
# The project need not be installed: the suite installs it with pip, fetching nothing
# (--no-deps --no-build-isolation --no-index), and where that fails (setuptools < 77 cannot build
# pyproject.toml) it puts this checkout on PYTHONPATH (benchmarks/dyn_path.py).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
dry=0
case "${1:-}" in
    --dry-run) dry=1 ;;
    "") ;;
    *) echo "usage: bash benchmarks/gpu_suite.sh [--dry-run]" >&2; exit 2 ;;
esac
py=${PYTHON:-python3}
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
scratch=$(mktemp -d "${TMPDIR:-/tmp}/dyn-gpu-suite.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
export PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1  # nothing to fetch, and nowhere to fetch it from
if [ $dry = 1 ]; then
    dev=cpu quick=--quick slower=4  # the limits are a GPU's; a shared CPU gets 4x as long
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
else
    dev=cuda quick= slower=1
fi

# `import dyn` must find THIS checkout, from outside it (so the working directory does not help)
have_dyn() {
    (cd "$scratch" && "$py" - "$root" <<'PY'
import importlib.metadata as md, os, sys
import dyn, dyn.train, dyn.analyze
assert os.path.realpath(dyn.__file__).startswith(os.path.join(os.path.realpath(sys.argv[1]), "dynamics", "")), dyn.__file__
assert {"train", "analyze"} <= {e.name for e in md.entry_points(group="dyn.commands")}
PY
    ) >/dev/null 2>&1
}
if ! have_dyn; then
    echo "== installing dyn from $root (pip --no-deps --no-build-isolation --no-index -e .)"
    if ! "$py" -m pip install -q --no-deps --no-build-isolation --no-index -e . >"$scratch/pip.txt" 2>&1 \
            || ! have_dyn; then
        echo "   pip could not ($(tail -n 1 "$scratch/pip.txt")); putting the checkout on PYTHONPATH instead"
        "$py" benchmarks/dyn_path.py "$scratch/path" >/dev/null || exit 1
        export PYTHONPATH="$scratch/path${PYTHONPATH:+:$PYTHONPATH}"
        have_dyn || { echo "dyn: error: cannot import dyn from $root with $py"; exit 1; }
    fi
fi

step() {  # step SECONDS NAME COMMAND...
    local limit=$(($1 * slower)) name=$2
    shift 2
    echo "== $name (limit ${limit}s)"
    local t0=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee "$out/$name.txt"
    echo "== $name: exit ${PIPESTATUS[0]} after $((SECONDS - t0)) s"
}
{
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    else
        echo "no nvidia-smi"
    fi
    "$py" - <<'PY'
import sys, torch, dyn
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda,
      torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device")
print("TF32: cudnn.allow_tf32", torch.backends.cudnn.allow_tf32, "matmul precision", torch.get_float32_matmul_precision())
print("dyn", dyn.__version__, "from", dyn.__file__)
PY
} 2>&1 | tee "$out/env.txt"
# ema: the plain and channels_last layouts, in one log
step 60 ema bash -c "'$py' benchmarks/ema_bench.py --device $dev $quick && '$py' benchmarks/ema_bench.py --device $dev $quick --channels-last"
# the headline first: the reference loop runs before the speed options, which stop at --budget
step 200 train "$py" benchmarks/train_bench.py --device $dev $quick --budget $((150 * slower))
step 90 record "$py" benchmarks/record_bench.py --device $dev $quick
# dyn sweep --batched: 15 runs as one stacked model against the same runs one after another
if [ $dry = 1 ]; then
    sweep_args=(--quick)
else
    sweep_args=(--dataset synthetic --runs 1,15 --epochs 1 --steps 12)
fi
step 70 sweep "$py" benchmarks/sweep_bench.py --device $dev "${sweep_args[@]}"
if [ $dry = 1 ]; then
    run_args=(--dataset digits --device cpu --epochs 1)
else
    run_args=(--dataset synthetic --device cuda --epochs 3)
fi
step 80 run "$py" -m dyn train "${run_args[@]}" --schedule constant --decay 0.9,0.99,0.999,0.9995,0.9997 \
    --no-progress --overwrite --out "$scratch/run.h5"
"$py" - "$scratch/run.h5" <<'PY' 2>&1 | tee "$out/estimate.txt"
import sys
from dyn import open_run
with open_run(sys.argv[1]) as run:
    m = run.metrics()
    later = m[m.epoch >= 2]["seconds"]  # epoch 1 carries cudnn autotuning and warm-up
    per = float(later.mean()) if len(later) else float(m["seconds"].iloc[-1])
    scale = 45000 / run.config["train_size"]  # rough: training and evaluation both scale with images
    print(f"dyn train on {run.config['environment'].get('device_name')}: {per:.2f} s per epoch (train + "
          f"evaluate 6 networks) on {run.config['train_size']:,} images; scaled to CIFAR-10's 45,000, "
          f"a 180-epoch run takes about {per * scale * 180 / 60:.1f} min (target < 5 min; train_bench's "
          f"full-size epoch + record figures are the precise estimate)")
PY
echo "logs in $out"
