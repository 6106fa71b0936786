"""What `dyn` refuses, command by command: one table of bad invocations and what each one says.

This table is the documentation of what dyn refuses. Each row is an invocation (`{w}` is the
working folder, which holds the inputs below), its exit status and fragments of its message.
Every row is checked the same way:

- the exit status is the row's: 2 a bad flag or value (an output that cannot be written or
  would be overwritten included), 1 a bad or unsuitable run file, 0 only where the row says
  why nothing needed doing;
- stderr is one line, `dyn: error: ...` holding every fragment; stdout is empty; no traceback.
  Rows of kind "note" exit 0 with one other line (e.g. "already complete, nothing to resume");
  rows of kind "help" are a group called without a command: its help on stderr, exit 2;
- nothing in the working folder is created, removed or changed: every path under it (hidden
  ones such as `.x.h5.lock` or a half-written temporary included) and the sha256 of every
  file's bytes are the same after the row as before it. Rows that write outside it aim at
  /proc, where nothing can be written.

Rows run as real `dyn` processes forked from one interpreter that has imported dyn, torch
included (tests/forkserver.py): the whole table takes seconds, not a torch import per row.
Rows of kind "nobody" run as an unprivileged user when the tests run as root (root ignores
permission bits); rows of kind "no-torch" run in a fresh interpreter on which torch cannot be
imported, as on an analysis-only install.

The inputs: Synthetic runs (dyn.synthetic) with and without weights, predictions, a
second EMA network, a single epoch; weights without correctness; an imported run (no lr, no
test split); a diverged run; one real `dyn train` run, stopped after its epoch (resumable);
an HDF5 file that is not a run, a text file, an empty file, an unreadable file; a file where a
folder is expected, a folder where a file is, a read-only folder.
"""

import hashlib
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from dyn import open_run
from dyn.importers.predictions import import_predictions
from dyn.layout import Layout, Network, Param
from dyn.synthetic import Synthetic
from dyn.writer import RunWriter
from helpers import run_dyn

ROOT_USER = os.geteuid() == 0
NOBODY = (65534, 65534)  # who a "nobody" row runs as when the tests run as root
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")

# dyn train on the digits for one epoch: should a check be missing, the run ends soon and the
# row fails on its exit status (and on the run file it wrote)
BASE = ["--dataset", "digits", "--epochs", "1", "--no-progress"]
TINY = ["--dataset", "digits", "--schedule", "constant", "--lr", "0.05", "--decay", "0.9",
        "--batch-size", "512", "--epochs", "1", "--no-progress"]


def row(id, argv, code, fragments, kind="error", *marks):
    return pytest.param(argv, code, (fragments,) if isinstance(fragments, str) else fragments, kind,
                        id=id, marks=marks)


def train(*args):
    return ["train", *BASE, *args, *([] if "--out" in args else ["--out", "{w}/x.h5"])]


def stability(*args):
    return ["analyze", "stability", "{w}/run.h5", *args]


def predictions(*args):
    return ["import", "predictions", *args, *([] if "--out" in args else ["--out", "{w}/x.h5"])]


def checkpoints(*args):
    return ["import", "checkpoints", *args, *([] if "--out" in args else ["--out", "{w}/x.h5"])]


ROWS = [
    # id, argv ({w}: the working folder), exit status, fragment(s) of stderr, kind (default "error")
    # ---------------------------------------------------------------------------- dyn itself
    row("dyn-no-command", [], 2, "Usage: dyn [OPTIONS] COMMAND [ARGS]...", "help"),
    row("dyn-unknown-command", ["nonsense"], 2, "No such command 'nonsense'. (see dyn --help)"),
    row("dyn-unknown-option", ["--frobnicate"], 2, "No such option '--frobnicate'. (see dyn --help)"),
    row("analyze-no-command", ["analyze"], 2, "Usage: dyn analyze [OPTIONS] COMMAND [ARGS]...", "help"),
    row("analyze-unknown-command", ["analyze", "nonsense"], 2, "No such command 'nonsense'. (see dyn analyze --help)"),
    row("import-no-command", ["import"], 2, "Usage: dyn import [OPTIONS] COMMAND [ARGS]...", "help"),
    row("import-unknown-command", ["import", "nonsense"], 2, "No such command 'nonsense'. (see dyn import --help)"),

    # ------------------------------------------------------------------------------ dyn train
    row("train-schedule", train("--schedule", "sawtooth"), 2, "'--schedule'"),
    row("train-model", train("--model", "resnet19"), 2, "'--model'"),
    row("train-dataset", train("--dataset", "mnist"), 2, "'--dataset'"),
    row("train-decay-0", train("--decay", "0"), 2, "--decay: 0.0 is outside (0, 1)"),
    row("train-decay-1", train("--decay", "1"), 2, "--decay: 1.0 is outside (0, 1)"),
    row("train-decay-above-1", train("--decay", "1.5"), 2, "--decay: 1.5 is outside (0, 1)"),
    row("train-decay-not-a-number", train("--decay", "0.9,abc"), 2, "--decay: expected numbers"),
    row("train-decay-repeated", train("--decay", "0.9,0.9"), 2, "--decay: decays repeat"),
    row("train-lr-0", train("--lr", "0"), 2, "--lr: must be > 0"),
    row("train-lr-negative", train("--lr", "-0.1"), 2, "--lr: must be > 0"),
    row("train-epochs-0", train("--epochs", "0"), 2, "--epochs: must be >= 1"),
    row("train-momentum-negative", train("--momentum", "-1"), 2, "--momentum: must lie in [0, 1), got -1.0"),
    row("train-checkpoint-every-0", train("--checkpoint-every", "0"), 2, "--checkpoint-every: must be >= 1, got 0"),
    row("train-milestones-decreasing", train("--milestones", "135,90"), 2, "--milestones: must be increasing"),
    row("train-milestones-not-integers", train("--milestones", "90,x"), 2,
        "--milestones: expected integers separated by commas, got '90,x'"),
    row("train-batch-larger-than-train-set", train("--batch-size", "5000"), 2,
        "--batch-size: 5000 is larger than the training set (1,077 samples)"),
    row("train-val-size-too-large", train("--val-size", "2000"), 2, "--val-size"),
    row("train-device-unknown", train("--device", "tpu"), 2, "--device: must be auto, cpu, cuda or cuda:N, got tpu"),
    row("train-device-cuda", train("--device", "cuda"), 2, "--device cuda: no CUDA device", "error", NO_CUDA),
    row("train-nproc-0", train("--nproc", "0"), 2, "--nproc: must be >= 1, got 0"),
    row("train-extra-argument", ["train", "extra"], 2, "Got unexpected extra argument (extra) (see dyn train --help)"),
    row("train-data-dir-is-a-file", train("--data-dir", "{w}/afile"), 2,
        "Invalid value for '--data-dir': Directory '{w}/afile' is a file"),
    row("train-cifar10-missing", train("--dataset", "cifar10", "--data-dir", "{w}/adir"), 2,
        "--data-dir: CIFAR-10 not found in {w}/adir: put cifar-10-python.tar.gz"),
    row("train-out-exists", train("--out", "{w}/run.h5"), 2,
        "--out: {w}/run.h5 already exists; continue it with --resume or replace it with --overwrite"),
    row("train-out-is-a-directory", train("--out", "{w}/adir"), 2, ("--out", "is a directory")),
    row("train-out-parent-is-a-file", train("--out", "{w}/afile/x.h5"), 2,
        "--out: {w}/afile/x.h5: {w}/afile is not a folder"),
    row("train-out-read-only-folder", train("--out", "{w}/locked/x.h5"), 2,
        "--out: {w}/locked/x.h5: folder {w}/locked is not writable (Permission denied)", "nobody"),
    row("train-out-under-proc", train("--out", "/proc/x.h5"), 2, "--out:"),
    row("train-out-missing-under-proc", train("--out", "/proc/dyn-missing/x.h5"), 2, "--out:"),
    row("train-resume-and-overwrite", train("--resume", "--overwrite", "--out", "{w}/stopped.h5"), 2,
        "--resume and --overwrite"),
    row("train-resume-other-lr", train("--resume", "--lr", "0.1", "--out", "{w}/stopped.h5"), 2,
        "--lr: 0.1 contradicts the run being resumed"),
    row("train-resume-other-decays", train("--resume", "--decay", "0.9,0.99", "--out", "{w}/stopped.h5"), 2,
        ("--decay:", "contradicts the run being resumed")),
    row("train-resume-complete", ["train", "--resume", "--out", "{w}/run.h5"], 0,
        "{w}/run.h5: already complete, nothing to resume", "note"),
    # a finished run refuses contradicting flags as a stopped one does (issue 19.5)
    row("train-resume-complete-other-lr", ["train", "--resume", "--lr", "0.3", "--out", "{w}/run.h5"], 2,
        "--lr: 0.3 contradicts the run being resumed ({w}/run.h5 has 0.1)"),
    row("train-resume-complete-more-epochs", ["train", "--resume", "--epochs", "100", "--out", "{w}/run.h5"], 2,
        "--epochs: 100 contradicts the run being resumed ({w}/run.h5 is complete at 9 epochs); to train it on, "
        "give --extend-to 100 instead"),
    row("train-extend-to-without-resume", train("--extend-to", "5"), 2,
        "--extend-to needs --resume and the --out of the run to extend"),
    row("train-extend-to-no-resume-state", ["train", "--resume", "--extend-to", "20", "--out", "{w}/run.h5"], 2,
        "--extend-to: {w}/run.h5 holds no resume state (not written by dyn train?)"),
    row("train-extend-to-missing-run", ["train", "--resume", "--extend-to", "5", "--out", "{w}/nope.h5"], 2,
        "--extend-to: {w}/nope.h5 does not exist; start it with --epochs 5"),
    row("train-resume-diverged", train("--resume", "--out", "{w}/diverged.h5"), 2,
        "--resume: {w}/diverged.h5 diverged at epoch 1; start a new run"),
    row("train-resume-no-resume-state", train("--resume", "--out", "{w}/stopped-synthetic.h5"), 2,
        "--resume: {w}/stopped-synthetic.h5 holds no resume state (not written by dyn train?)"),
    row("train-resume-not-hdf5", train("--resume", "--out", "{w}/text.h5"), 1, "{w}/text.h5: not an HDF5 file"),
    row("train-without-torch", ["train", *BASE, "--nproc", "2"], 2,
        "dyn train needs PyTorch, which is not installed: pip install 'dyn-ema[train]'", "no-torch"),

    # ------------------------------------------------------------------------------ dyn sweep
    row("sweep-unknown-option", ["sweep", "--frobnicate"], 2, "No such option '--frobnicate'. (see dyn sweep --help)"),
    row("sweep-unknown-preset", ["sweep", "--preset", "table9"], 2, "Invalid value for '--preset': 'table9'"),
    row("sweep-lr-not-a-number", ["sweep", "--lr", "0.1,abc", "--print"], 2,
        "--lr: expected numbers separated by commas, got '0.1,abc'"),
    row("sweep-lr-repeated", ["sweep", "--lr", "0.1,0.1", "--print"], 2, "--lr: 0.1 is given twice"),
    row("sweep-model-unknown", ["sweep", "--model", "resnet19", "--print"], 2, "--model: unknown model 'resnet19'"),
    row("sweep-decay-outside", ["sweep", "--decay", "2", "--print"], 2, "--decay: 2.0 is outside (0, 1)"),
    row("sweep-epochs-0", ["sweep", "--epochs", "0", "--print"], 2, "--epochs: must be >= 1, got 0"),
    row("sweep-preset-other-lr", ["sweep", "--preset", "table1", "--lr", "0.3", "--print"], 2,
        "--lr: contradicts --preset table1, whose runs have 0.1"),
    row("sweep-gpus-not-indices", ["sweep", "--dataset", "digits", "--gpus", "x"], 2,
        "--gpus: expected GPU indices separated by commas, got 'x'"),
    row("sweep-out-dir-is-a-file", ["sweep", "--dataset", "digits", "--out-dir", "{w}/afile"], 2,
        "Invalid value for '--out-dir': Directory '{w}/afile' is a file"),
    row("sweep-without-torch", ["sweep", "--dataset", "digits"], 2,
        ("dyn sweep needs PyTorch", "(--print needs no torch)"), "no-torch"),

    # ----------------------------------------------------------------- dyn analyze stability
    row("stability-no-runs", ["analyze", "stability"], 2, "Missing argument 'RUNS...'"),
    row("stability-unknown-option", stability("--frobnicate"), 2, "No such option '--frobnicate'"),
    row("stability-missing-file", ["analyze", "stability", "{w}/nope.h5"], 1, "{w}/nope.h5: no such file"),
    row("stability-a-directory", ["analyze", "stability", "{w}/adir"], 1, "{w}/adir: is a directory, not a run file"),
    row("stability-unreadable-file", ["analyze", "stability", "{w}/secret.h5"], 2,
        "Path '{w}/secret.h5' is not readable", "nobody"),
    row("stability-second-run-missing", stability("{w}/nope.h5", "--out", "{w}/o/s.png"), 1,
        "{w}/nope.h5: no such file"),
    row("stability-to-epoch-outside", stability("--to-epoch", "10"), 2,
        "--to-epoch 10 is outside the recorded epochs 0..9 of split 'val' in {w}/run.h5"),
    row("stability-epoch-not-a-number", stability("--from-epoch", "x"), 2,
        "Invalid value for '--from-epoch': 'x' is not a valid integer"),
    row("stability-window-of-one-epoch", stability("--from-epoch", "4", "--to-epoch", "4"), 2,
        "stability needs at least 2 recorded epochs; the window 4..4 of split 'val' has 1 (epoch 4)"),
    row("stability-run-of-one-epoch", ["analyze", "stability", "{w}/one.h5"], 1,
        "{w}/one.h5: stability needs at least 2 recorded epochs; the run of split 'val' has 1 (epoch 0)"),
    row("stability-unknown-net", stability("--net", "sgd,ema-0.5"), 2,
        "--net ema-0.5: no such network in {w}/run.h5 (networks: sgd, ema-0.999)"),
    row("stability-ambiguous-ema", ["analyze", "stability", "{w}/two.h5", "--net", "ema"], 2,
        "--net ema is ambiguous: {w}/two.h5 has 2 EMA networks (ema-0.9, ema-0.99); name one"),
    row("stability-empty-net", stability("--net", ",sgd"), 2, "--net: empty network name in ',sgd'"),
    row("stability-only-weights", ["analyze", "stability", "{w}/weights.h5"], 1,
        "{w}/weights.h5: records no per-sample correctness (it holds only weights); stability needs it"),
    row("stability-figure-jpg", stability("--out", "{w}/s.jpg"), 2,
        "--out {w}/s.jpg: a figure is .png, .pdf or .svg, not .jpg"),
    row("stability-out-parent-is-a-file", stability("--out", "{w}/afile/s.png"), 2,
        "--out {w}/afile/s.png: {w}/afile is not a directory"),
    row("stability-csv-parent-is-a-file", stability("--csv", "{w}/afile/s.csv"), 2,
        "--csv {w}/afile/s.csv: {w}/afile is not a directory"),
    # a folder given as --csv or --out gets <analysis>.csv/.png inside it (issue 19.6)
    row("stability-csv-folder-is-a-file", stability("--csv", "{w}/afile/"), 2,
        "--csv {w}/afile/stability.csv: {w}/afile is not a directory"),
    row("stability-out-folder-is-a-file", stability("--out", "{w}/afile/"), 2,
        "--out {w}/afile/stability.png: {w}/afile is not a directory"),
    row("stability-out-under-proc", stability("--out", "/proc/s.png"), 2, "--out /proc/s.png: cannot write in /proc"),
    row("stability-out-read-only-folder", stability("--out", "{w}/locked/s.png"), 2,
        "--out {w}/locked/s.png: cannot write in {w}/locked (permission denied)", "nobody"),
    row("stability-csv-read-only-folder", stability("--csv", "{w}/locked/sub/s.csv"), 2,
        "--csv {w}/locked/sub/s.csv: cannot write in {w}/locked", "nobody"),
    row("stability-refused-after-outputs-checked", stability("--net", "nope", "--out", "{w}/o/s.png", "--csv",
                                                             "{w}/o/s.csv"), 2, "--net nope: no such network"),

    # ------------------------------------------------------------------ dyn analyze histogram
    row("histogram-not-hdf5", ["analyze", "histogram", "{w}/text.h5"], 1, "{w}/text.h5: not an HDF5 file"),
    row("histogram-no-such-split", ["analyze", "histogram", "{w}/run.h5", "--split", "train"], 2,
        "--split train: {w}/run.h5 has no split 'train' (splits: val, test)"),
    row("histogram-from-epoch-negative", ["analyze", "histogram", "{w}/run.h5", "--from-epoch", "-1"], 2,
        "--from-epoch -1 is outside"),
    row("histogram-bins-too-many", ["analyze", "histogram", "{w}/run.h5", "--bins", "5000"], 2,
        "Invalid value for '--bins': 5000 is not in the range 1<=x<=1000"),
    row("histogram-figure-gif", ["analyze", "histogram", "{w}/run.h5", "--out", "{w}/h.gif"], 2,
        "a figure is .png, .pdf or .svg, not .gif"),

    # ---------------------------------------------------------------------- dyn analyze flips
    row("flips-hdf5-not-a-run", ["analyze", "flips", "{w}/other.h5"], 1,
        "{w}/other.h5: an HDF5 file, but not a dyn run file"),
    row("flips-window-reversed", ["analyze", "flips", "{w}/run.h5", "--from-epoch", "6", "--to-epoch", "2"], 2,
        "--from-epoch 6 is after --to-epoch 2"),
    row("flips-run-of-one-epoch", ["analyze", "flips", "{w}/one.h5"], 1, "flips needs at least 2 recorded epochs"),
    row("flips-too-many-barcodes", ["analyze", "flips", "{w}/run.h5", "--out", "{w}/f.png", "--top", "500"], 2,
        "--top 500: too many barcodes to draw (at most 100); use --csv for the numbers"),
    row("flips-top-0-with-a-figure", ["analyze", "flips", "{w}/run.h5", "--out", "{w}/f.png", "--top", "0"], 2,
        "--top 0 with --out: no barcodes to draw"),
    row("flips-rank-by-unknown", ["analyze", "flips", "{w}/run.h5", "--rank-by", "luck"], 2,
        "Invalid value for '--rank-by': 'luck'"),
    row("flips-rank-by-sgd-without-sgd", ["analyze", "flips", "{w}/run.h5", "--rank-by", "sgd", "--net", "ema"], 2,
        "--rank-by sgd: no sgd network among ema-0.999 in {w}/run.h5"),

    # ---------------------------------------------------------------- dyn analyze weight-diff
    row("weight-diff-no-weights", ["analyze", "weight-diff", "{w}/preds.h5"], 1,
        "{w}/preds.h5: records no weights (it holds only predictions); weight-diff needs SGD and EMA weights"),
    row("weight-diff-to-epoch-outside", ["analyze", "weight-diff", "{w}/run.h5", "--to-epoch", "12"], 2,
        "--to-epoch 12 is outside the epochs 0..5 with weights in {w}/run.h5"),
    row("weight-diff-window-empty", ["analyze", "weight-diff", "{w}/run.h5", "--from-epoch", "1", "--to-epoch", "4"],
        2, "no weights recorded between epochs 1 and 4 in {w}/run.h5"),
    row("weight-diff-window-reversed", ["analyze", "weight-diff", "{w}/run.h5", "--from-epoch", "5", "--to-epoch",
                                        "0"], 2, "--from-epoch 5 is after --to-epoch 0"),
    row("weight-diff-unknown-net", ["analyze", "weight-diff", "{w}/weights.h5", "--net", "ema-0.5"], 2,
        "--net ema-0.5: no such network in {w}/weights.h5 (networks: sgd, ema-0.99)"),

    # ------------------------------------------------------------------- dyn analyze accuracy
    row("accuracy-band-unknown", ["analyze", "accuracy", "{w}/run.h5", "--band", "wide"], 2,
        "Invalid value for '--band': 'wide' is not one of 'minmax', 'std'"),
    row("accuracy-lr-not-recorded", ["analyze", "accuracy", "{w}/imported.h5", "--lr"], 1,
        "{w}/imported.h5: its metrics have no 'lr' column; --lr needs it"),
    row("accuracy-same-run-twice", ["analyze", "accuracy", "{w}/preds.h5", "{w}/preds.h5"], 1,
        "cannot average over seeds: {w}/preds.h5 is given twice; give each run once"),
    row("accuracy-same-seed-twice", ["analyze", "accuracy", "{w}/preds.h5", "{w}/preds-copy.h5"], 1,
        "cannot average over seeds: {w}/preds.h5 and {w}/preds-copy.h5 are the same experiment and seed (0)"),
    row("accuracy-no-such-split", ["analyze", "accuracy", "{w}/run.h5", "--split", "train"], 2,
        "--split train: {w}/run.h5 has no split 'train'"),

    # ------------------------------------------------------------------ dyn analyze agreement
    row("agreement-one-net", ["analyze", "agreement", "{w}/run.h5", "--net", "sgd"], 2,
        "--net: agreement compares two networks; got 1 (sgd)"),
    row("agreement-no-ema", ["analyze", "agreement", "{w}/imported.h5"], 2,
        "{w}/imported.h5: agreement compares sgd with each EMA network, and it has no EMA network (networks: sgd); "
        "name the two to compare with --net A,B"),
    row("agreement-bins-0", ["analyze", "agreement", "{w}/run.h5", "--bins", "0"], 2,
        "Invalid value for '--bins': 0 is not in the range 1<=x<=1000"),
    row("agreement-empty-file", ["analyze", "agreement", "{w}/run.h5", "{w}/empty.h5"], 1,
        "{w}/empty.h5: not an HDF5 file"),

    # --------------------------------------------------------------------- dyn analyze report
    row("report-no-out-dir", ["analyze", "report", "{w}/run.h5"], 2, "Missing option '--out-dir'"),
    row("report-out-dir-is-a-file", ["analyze", "report", "{w}/run.h5", "--out-dir", "{w}/afile"], 2,
        "--out-dir {w}/afile: exists and is not a folder"),
    row("report-format-jpg", ["analyze", "report", "{w}/run.h5", "--out-dir", "{w}/rep", "--format", "jpg"], 2,
        "Invalid value for '--format': 'jpg' is not one of 'png', 'svg', 'pdf'"),
    row("report-top-0", ["analyze", "report", "{w}/run.h5", "--out-dir", "{w}/rep", "--top", "0"], 2,
        "Invalid value for '--top': 0 is not in the range 1<=x<=100"),
    row("report-unknown-net", ["analyze", "report", "{w}/run.h5", "--out-dir", "{w}/rep/a", "--net", "nope"], 2,
        "--net nope: no such network in {w}/run.h5"),
    row("report-window-reversed", ["analyze", "report", "{w}/run.h5", "--out-dir", "{w}/rep", "--from-epoch", "8",
                                   "--to-epoch", "2"], 2, "--from-epoch 8 is after --to-epoch 2"),
    row("report-missing-run", ["analyze", "report", "{w}/nope.h5", "--out-dir", "{w}/rep"], 1,
        "{w}/nope.h5: no such file"),
    row("report-out-dir-under-proc", ["analyze", "report", "{w}/run.h5", "--out-dir", "/proc/rep"], 2,
        "--out-dir /proc/rep/index.html: cannot write in /proc"),
    row("report-out-dir-read-only", ["analyze", "report", "{w}/run.h5", "--out-dir", "{w}/locked/rep"], 2,
        "--out-dir {w}/locked/rep/index.html: cannot write in {w}/locked (permission denied)", "nobody"),

    # ------------------------------------------------------------------------------ dyn table
    row("table-no-runs", ["table"], 2, "Missing argument 'RUNS...'. (see dyn table --help)"),
    row("table-missing-file", ["table", "{w}/nope.h5"], 1, "{w}/nope.h5: no such file"),
    row("table-a-directory", ["table", "{w}/adir"], 1, "{w}/adir: is a directory, not a run file"),
    row("table-not-hdf5", ["table", "{w}/text.h5"], 1, "{w}/text.h5: not an HDF5 file"),
    row("table-only-weights", ["table", "{w}/weights.h5"], 1, "no run records the 'test' split"),
    row("table-no-test-split", ["table", "{w}/imported.h5"], 1,
        "no run records the 'test' split (splits of {w}/imported.h5: val); the table needs its final accuracies"),
    row("table-no-train-split", ["table", "{w}/run.h5", "--split", "train"], 1, "no run records the 'train' split"),
    row("table-format-html", ["table", "{w}/run.h5", "--format", "html"], 2, "Invalid value for '--format': 'html'"),
    row("table-group-by-unknown", ["table", "{w}/run.h5", "--group-by", "color"], 2,
        "--group-by color: no run's config has 'color'"),
    row("table-split-val", ["table", "{w}/run.h5", "--split", "val"], 2,
        "--split val: the tables show final accuracies on test (or train), as the paper's tables do; val is not used"),
    row("table-train-split-unknown", ["table", "{w}/run.h5", "--train-split", "flipped"], 2,
        "Invalid value for '--train-split': 'flipped' is not one of 'augmented', 'clean'"),
    row("table-table3-other-key", ["table", "{w}/run.h5", "{w}/one.h5", "--layout", "table3"], 2,
        "--layout table3 has one row per schedule, but the runs also differ in"),
    row("table-same-run-twice", ["table", "{w}/run.h5", "{w}/run.h5"], 2, "{w}/run.h5 is given twice; give each run once"),
    row("table-same-seed-twice", ["table", "{w}/preds.h5", "{w}/preds-copy.h5"], 2,
        "{w}/preds.h5 and {w}/preds-copy.h5 are the same experiment and seed (0); give each run once"),
    row("table-lr-layout-which-decay", ["table", "{w}/two.h5", "--layout", "lr"], 2,
        "records hold EMA decays 0.9, 0.99; choose one with --decay"),
    row("table-lr-layout-unknown-decay", ["table", "{w}/run.h5", "--layout", "lr", "--decay", "0.5"], 2,
        "no EMA network with decay 0.5"),
    row("table-digits-too-many", ["table", "{w}/run.h5", "--digits", "9"], 2,
        "Invalid value for '--digits': 9 is not in the range 0<=x<=6"),

    # ---------------------------------------------------------------- dyn import checkpoints
    row("checkpoints-no-out", ["import", "checkpoints", "{w}/adir"], 2,
        "--out RUN.h5 is required (or --dry-run to only show what would be imported)"),
    row("checkpoints-no-sources", checkpoints(), 2, "no SOURCES given"),
    row("checkpoints-missing", checkpoints("{w}/nope"), 1, "{w}/nope: no such file or folder"),
    row("checkpoints-folder-without-checkpoints", checkpoints("{w}/notes"), 1,
        "{w}/notes: folder holds no .pt/.pth/.ckpt/.bin/.pth.tar/.safetensors files"),
    row("checkpoints-glob-matches-nothing", checkpoints("{w}/*.pt"), 1, "{w}/*.pt: matches no files"),
    row("checkpoints-a-run-file", checkpoints("{w}/run.h5"), 1,
        "{w}/run.h5: not a torch checkpoint (neither torch's zip format nor a pickle)"),
    row("checkpoints-sources-and-sgd", checkpoints("{w}/notes", "--sgd", "x*.pt"), 2,
        "give either SOURCES or --sgd/--ema, not both"),
    row("checkpoints-model-without-evaluate", checkpoints("{w}/notes", "--model", "resnet20"), 2,
        "--model/--model-factory only make sense with --evaluate"),
    row("checkpoints-evaluate-without-model", checkpoints("{w}/notes", "--evaluate"), 2,
        "--evaluate needs exactly one of --model NAME or --model-factory"),
    row("checkpoints-evaluate-unknown-model", checkpoints("{w}/notes", "--evaluate", "--model", "resnet19",
                                                          "--dataset", "digits"), 2,
        "--model: unknown model 'resnet19'"),
    row("checkpoints-evaluate-unknown-split", checkpoints("{w}/notes", "--evaluate", "--model", "resnet20",
                                                          "--dataset", "digits", "--split", "bogus"), 2,
        "--split 'bogus': choose from val, test, train"),
    # the user's own code (--model-factory) raising into dyn: one line naming model, data and error (issue 19.4)
    row("checkpoints-evaluate-model-wrong-channels",
        checkpoints("{w}/notes", "--evaluate", "--model-factory", "userfactories:three_channels", "--dataset",
                    "digits"), 2,
        ("--evaluate: model userfactories:three_channels on digits (1-channel 8x8 images, 10 classes, cpu) cannot "
         "run on them: RuntimeError:", "to have 3 channels, but got 1 channels instead")),
    row("checkpoints-evaluate-model-other-classes", checkpoints("{w}/notes", "--evaluate", "--model-factory",
                                                                "userfactories:many_classes", "--dataset", "digits"), 2,
        "the model's output has shape [2, 1000], expected [batch, 10] (one score per class)"),
    row("checkpoints-evaluate-model-wrong-dtype", checkpoints("{w}/notes", "--evaluate", "--model-factory",
                                                              "userfactories:float64", "--dataset", "digits"), 2,
        ("--evaluate: model userfactories:float64 on digits", "cannot run on them: RuntimeError:")),
    row("checkpoints-evaluate-factory-raises", checkpoints("{w}/notes", "--evaluate", "--model-factory",
                                                           "userfactories:raises", "--dataset", "digits"), 2,
        "--model-factory 'userfactories:raises': calling it raised TypeError: make() missing 1 required"),
    row("checkpoints-evaluate-factory-module-raises", checkpoints("{w}/notes", "--evaluate", "--model-factory",
                                                                  "badmodule:make", "--dataset", "digits"), 2,
        "--model-factory 'badmodule:make': importing 'badmodule' raised RuntimeError: no GPU here"),
    row("checkpoints-order-unknown", checkpoints("{w}/notes", "--order", "random"), 2,
        "Invalid value for '--order': 'random'"),
    row("checkpoints-epoch-offset-not-a-number", checkpoints("{w}/notes", "--epoch-offset", "x"), 2,
        "Invalid value for '--epoch-offset': 'x' is not a valid integer"),
    row("checkpoints-out-exists", checkpoints("{w}/notes", "--out", "{w}/run.h5"), 2,
        "--out {w}/run.h5: already exists; pass --overwrite to replace it"),
    row("checkpoints-out-under-proc", checkpoints("{w}/notes", "--out", "/proc/x.h5"), 2,
        "--out /proc/x.h5: folder /proc is not writable"),
    row("checkpoints-evaluate-without-torch", checkpoints("{w}/notes", "--evaluate", "--model", "resnet20"), 2,
        "--evaluate needs PyTorch, which is not installed: pip install 'dyn-ema[train]'", "no-torch"),

    # ---------------------------------------------------------------- dyn import predictions
    row("predictions-no-out", ["import", "predictions", "{w}/sgd.npy"], 2, "--out RUN.h5 is required"),
    row("predictions-out-exists", predictions("{w}/sgd.npy", "--out", "{w}/run.h5"), 2,
        "--out {w}/run.h5: already exists; pass --overwrite to replace it"),
    row("predictions-out-is-a-directory", predictions("{w}/sgd.npy", "--out", "{w}/adir"), 2,
        "Invalid value for '--out' / '-o': File '{w}/adir' is a directory"),
    row("predictions-out-parent-is-a-file", predictions("{w}/sgd.npy", "--out", "{w}/afile/x.h5"), 2,
        "--out {w}/afile/x.h5: {w}/afile is not a folder"),
    row("predictions-out-under-proc", predictions("{w}/sgd.npy", "--out", "/proc/x.h5"), 2,
        "--out /proc/x.h5: folder /proc is not writable"),
    row("predictions-out-read-only-folder", predictions("{w}/sgd.npy", "--out", "{w}/locked/x.h5"), 2,
        "--out {w}/locked/x.h5: folder {w}/locked is not writable (Permission denied)", "nobody"),
    row("predictions-net-without-file", predictions("--net", "sgd"), 2, "--net 'sgd': expected NAME=FILE"),
    row("predictions-net-twice", predictions("--net", "sgd={w}/sgd.npy", "--net", "sgd={w}/sgd.npy"), 2,
        "--net 'sgd' is given twice"),
    row("predictions-net-name-with-slash", predictions("--net", "a/b={w}/sgd.npy"), 2,
        "--net 'a/b': a network or split name is not empty, holds no '/' and does not start with '.'"),
    row("predictions-split-empty", predictions("{w}/sgd.npy", "--split", ""), 2,
        "--split '': a network or split name is not empty"),
    row("predictions-not-a-predictions-file", predictions("{w}/text.h5"), 1,
        "{w}/text.h5: not a predictions file (expected .npy, .npz, .csv, .parquet, .pq)"),
    row("predictions-folder-without-predictions", predictions("{w}/adir"), 1,
        "{w}/adir: folder holds no .npy/.npz/.csv/.parquet/.pq files"),
    row("predictions-missing", predictions("{w}/nope.npy"), 1, "{w}/nope.npy: no such file or folder"),
    row("predictions-pickled-array", predictions("{w}/obj.npy"), 1,
        "{w}/obj.npy: holds a pickled (object) array, which dyn never loads"),
    row("predictions-different-lengths", predictions("--net", "sgd={w}/sgd.npy", "--net", "ema={w}/ema.npy"), 1,
        "predictions of different lengths"),
    row("predictions-labels-missing", predictions("{w}/sgd.npy", "--labels", "{w}/nope.npy"), 1,
        "{w}/nope.npy: cannot be read (No such file or directory)"),
    row("predictions-labels-not-numpy", predictions("{w}/sgd.npy", "--labels", "{w}/text.h5"), 1,
        "{w}/text.h5: not a numpy array of labels (.npy) file"),
    row("predictions-labels-unreadable", predictions("{w}/sgd.npy", "--labels", "{w}/secret.h5"), 2,
        "File '{w}/secret.h5' is not readable", "nobody"),
    row("predictions-decay-outside", predictions("{w}/sgd.npy", "--decay", "2"), 2,
        "--decay must lie in (0, 1), not 2.0"),
    row("predictions-first-epoch-negative", predictions("{w}/sgd.npy", "--first-epoch", "-3"), 1,
        "{w}/sgd.npy: epochs must be non-negative and increasing"),
    row("predictions-first-epoch-not-a-number", predictions("{w}/sgd.npy", "--first-epoch", "abc"), 2,
        "Invalid value for '--first-epoch': 'abc' is not a valid integer"),

    # ---------------------------------------------------------------------------- dyn inspect
    row("inspect-extra-argument", ["inspect", "{w}/run.h5", "extra"], 2, "Got unexpected extra argument (extra)"),
    row("inspect-unknown-option", ["inspect", "{w}/run.h5", "--yaml"], 2, "No such option '--yaml'"),
    row("inspect-parent-is-a-file", ["inspect", "{w}/afile/x.h5"], 1, "{w}/afile/x.h5: no such file"),
    row("inspect-empty-file", ["inspect", "{w}/empty.h5"], 1, "{w}/empty.h5: not an HDF5 file"),
    row("inspect-unreadable-file", ["inspect", "{w}/secret.h5"], 2, "Path '{w}/secret.h5' is not readable", "nobody"),
]


# ------------------------------------------------------------------------------ the inputs
def _set_state(path, state: int, diverged_epoch: int = -1):
    """Rewrite /status's state (docs/format.md: 1 complete, 2 diverged, 3 stopped)."""
    with h5py.File(path, "r+") as f:
        status = f["status"][...]
        status[0], status[1] = state, diverged_epoch
        f["status"][...] = status


@pytest.fixture(scope="module")
def work(forkserver):
    """The working folder of every row, with the inputs the rows name. Made under /tmp when the
    tests run as root, so that the unprivileged user of the "nobody" rows can reach it."""
    w = Path(tempfile.mkdtemp(prefix="dyn-bad-inputs-", dir="/tmp" if ROOT_USER else None))
    os.chmod(w, 0o755)
    r = forkserver.run("train", *TINY, "--out", w / "stopped.h5", cwd=w, timeout=300)
    assert r.code == 0, r.stderr
    _set_state(w / "stopped.h5", 3)  # a run stopped after its last epoch: resumable (its resume state)
    with open_run(w / "stopped.h5") as stopped:
        assert stopped.state == "stopped" and stopped.resumable
    Synthetic(epochs=10, samples=50, decays=(0.999,), n_params=40).write(w / "run.h5")
    shutil.copy(w / "run.h5", w / "diverged.h5")
    _set_state(w / "diverged.h5", 2, 1)
    Synthetic(epochs=4, samples=20, decays=(0.9, 0.99), n_params=40).write(w / "two.h5")
    Synthetic(epochs=3, samples=20, weights_every=0).write(w / "preds.h5")
    shutil.copy(w / "preds.h5", w / "preds-copy.h5")
    Synthetic(epochs=1, samples=20, n_params=40).write(w / "one.h5")
    Synthetic(epochs=3, samples=20, n_params=40).write(w / "stopped-synthetic.h5")
    _set_state(w / "stopped-synthetic.h5", 3)
    lay = Layout(networks=[Network.sgd(), Network.ema(0.99)], params=[Param("w", (4,), "param")])
    with RunWriter.create(w / "weights.h5", lay, {}) as writer:
        for e in range(3):
            writer.append(e, weights={"sgd": (np.ones(4) * e, None), "ema-0.99": (np.ones(4), None)})
        writer.finish()
    np.save(w / "sgd.npy", np.ones((3, 5), bool))
    np.save(w / "ema.npy", np.ones((4, 5), bool))
    np.save(w / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    import_predictions([str(w / "sgd.npy")], w / "imported.h5")
    with h5py.File(w / "other.h5", "w") as f:
        f["x"] = np.arange(3)
    (w / "text.h5").write_text("epoch,acc\n1,0.5\n")
    (w / "empty.h5").write_bytes(b"")
    (w / "afile").write_text("not a folder")
    (w / "adir").mkdir()
    (w / "notes").mkdir()
    # a user's model factories (--model-factory), compiled here: importing them writes nothing
    (w / "userfactories.py").write_text(
        "import torch\n\n\n"
        "def three_channels():  # e.g. torchvision's resnet18: RGB input\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(10))\n\n\n"
        "def many_classes():\n    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 1000))\n\n\n"
        "def float64():\n    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).double()\n\n\n"
        "def raises():\n    raise TypeError(\"make() missing 1 required positional argument: 'num_classes'\")\n")
    (w / "badmodule.py").write_text("raise RuntimeError('no GPU here')\n")
    import py_compile

    for m in ("userfactories", "badmodule"):
        py_compile.compile(str(w / f"{m}.py"), doraise=True,
                           cfile=str(w / "__pycache__" / f"{m}.{sys.implementation.cache_tag}.pyc"))
    (w / "notes" / "notes.txt").write_text("no checkpoints here")
    shutil.copy(w / "run.h5", w / "secret.h5")
    os.chmod(w / "secret.h5", 0)
    (w / "locked").mkdir()
    os.chmod(w / "locked", 0o555)
    yield w
    os.chmod(w / "locked", 0o755)
    shutil.rmtree(w)


def snapshot(folder):
    """Every path under `folder` with the sha256 of its bytes (None for folders); a file we
    may not read (secret.h5 when not root), by its size, mode and modification time."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), folder)] = None
        for name in filenames:
            p = os.path.join(dirpath, name)
            try:
                with open(p, "rb") as f:
                    out[os.path.relpath(p, folder)] = hashlib.sha256(f.read()).hexdigest()
            except PermissionError:
                st = os.stat(p)
                out[os.path.relpath(p, folder)] = (st.st_size, stat.filemode(st.st_mode), st.st_mtime_ns)
    return out


def run(forkserver, argv, kind, cwd):
    """(exit code, stdout, stderr) of `dyn ARGV`."""
    if kind == "no-torch":
        r = run_dyn(*argv, block=("torch", "torchvision"), cwd=cwd, timeout=60)
        return r.returncode, r.stdout, r.stderr
    user = NOBODY if kind == "nobody" and ROOT_USER else None
    r = forkserver.run(*argv, cwd=cwd, timeout=60, user=user)
    assert r.signal is None, (r.signal, r.stderr)
    return r.code, r.stdout, r.stderr


@pytest.mark.parametrize("argv, code, fragments, kind", ROWS)
def test_refused_in_one_line_writing_nothing(forkserver, work, argv, code, fragments, kind):
    argv = [a.format(w=work) for a in argv]
    before = snapshot(work)
    got, out, err = run(forkserver, argv, kind, work)
    assert got == code, err
    assert "Traceback" not in err, err
    assert out == "", out
    for fragment in fragments:
        assert fragment.format(w=work) in err, err
    if kind == "help":
        assert err.startswith("Usage: dyn") and "dyn: error" not in err, err
    else:
        lines = err.splitlines()
        assert len(lines) == 1 and err.endswith("\n"), err
        assert lines[0].startswith("dyn: error: ") == (kind != "note"), err
    assert snapshot(work) == before


def test_the_table_covers_every_command():
    """Rows for every command and every analysis (and dyn itself), each id once, 45 rows at least."""
    def command(argv):
        return " ".join(argv[:2] if argv[:1] in (["analyze"], ["import"]) and len(argv) > 1 else argv[:1])

    have = {command(p.values[0]) for p in ROWS}
    want = {"", "train", "sweep", "table", "inspect", "import checkpoints", "import predictions"} | {
        f"analyze {a}" for a in ("stability", "histogram", "flips", "weight-diff", "accuracy", "agreement", "report")}
    assert want <= have, want - have
    assert len({p.id for p in ROWS}) == len(ROWS) >= 45
