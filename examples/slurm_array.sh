#!/usr/bin/env bash
# The paper's Table 1 as a SLURM job array: task i trains line i of `dyn sweep --print`.
#
#   mkdir -p logs
#   sbatch --array=1-$(dyn sweep --preset table1 --print | wc -l) examples/slurm_array.sh
#   dyn table runs/table1/*.h5                        # when the array is done
#
# Every line ends in --resume, so a task that was preempted or timed out continues from its
# last complete epoch when it runs again (resubmit the array, or use --requeue); a finished
# run is left as it is. Other tables: PRESET=table2 (6 runs), PRESET=table3 (3 ResNet-50 runs;
# give them more GPUs with NPROC=4 and --gres=gpu:4).
#SBATCH --job-name=dyn-sweep
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --time=24:00:00
#SBATCH --requeue
#SBATCH --output=logs/%x-%A_%a.out
set -euo pipefail

PRESET=${PRESET:-table1}
DATA_DIR=${DATA_DIR:-data}        # holds cifar-10-python.tar.gz (dyn never downloads)
OUT_DIR=${OUT_DIR:-runs/$PRESET}
NPROC=${NPROC:-1}                 # GPUs per run (DDP through torchrun when above 1)

task=${SLURM_ARRAY_TASK_ID:?run this as a job array: sbatch --array=1-N $0}
extra=()
[ "$NPROC" -gt 1 ] && extra=(--nproc "$NPROC")
line=$(dyn sweep --preset "$PRESET" --data-dir "$DATA_DIR" --out-dir "$OUT_DIR" ${extra[@]+"${extra[@]}"} --print \
       | sed -n "${task}p")
if [ -z "$line" ]; then
    echo "task $task: the $PRESET sweep has fewer runs" >&2
    exit 1
fi
echo "task $task: $line" >&2
eval "$line"
