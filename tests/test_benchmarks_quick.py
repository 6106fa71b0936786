"""Every benchmark's --quick run still runs and prints its figures (not asserted: they are a
machine's, for benchmarks/README.md), so the benchmark cannot rot."""

import re
import subprocess
import sys

from helpers import ROOT

ROW = r"^  dyn eager +([\d,]+) +(\d+\.\d\d) +(\d+\.\d\d) +(\d+\.\d)%$"


def test_train_bench_quick_prints_speed_recording_overhead_and_the_reference_ratio():
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train_bench.py"), "--quick", "--device", "cpu"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert re.search(r"^machine: .+, \d+ logical CPUs, torch \S+ \(\d+ threads\)$", out, re.M), out
    assert "K = 5 EMA networks" in out
    rows = re.findall(ROW, out, re.M)
    assert len(rows) == 2, out  # digits, then CIFAR-shaped synthetic
    for ips, epoch_s, record_s, fraction in rows:
        assert float(ips.replace(",", "")) > 0 and float(epoch_s) > 0 and float(record_s) > 0 and float(fraction) > 0
    assert re.search(r"^  reference: PIL \+ torchvision transforms \+ DataLoader \(\d+ workers\): [\d,]+ img/s$",
                     out, re.M), out
    assert re.search(r"^  dyn / reference: \d+\.\d\dx \(eager\)$", out, re.M), out


def bench(name, *args):
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), "--quick", *args],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_ema_bench_quick_counts_ops_that_do_not_grow_with_k():
    out = bench("ema_bench.py", "--device", "cpu")
    rows = re.findall(r"^ +(\d+) (dyn|averaged|loop) +([\d.]+) +(\d+) +([\d.]+)x$", out, re.M)
    assert {(k, m) for k, m, *_ in rows} == {(k, m) for k in ("1", "5") for m in ("dyn", "averaged", "loop")}, out
    ops = {(k, m): int(n) for k, m, _, n, _ in rows}
    assert ops["1", "dyn"] == ops["5", "dyn"] <= 6  # the claim the benchmark exists to show
    assert ops["5", "averaged"] > ops["1", "averaged"] and ops["5", "loop"] > ops["1", "loop"]
    assert re.search(r"^K=5: dyn time / AveragedModel time = \d+\.\d+ \(target <= 0\.5\)", out, re.M), out


def test_record_bench_quick_times_three_ways_and_the_write():
    out = bench("record_bench.py", "--device", "cpu")
    for way in ("plain", "loop", "stacked"):
        assert re.search(rf"^{way} +\d+\.\d+ +\d+\.\d%", out, re.M), out
    assert re.search(r"^write of one epoch \(fsync'd\): \d+\.\d+ s", out, re.M), out
    assert "recording overhead, dyn's default here (loop)" in out


def test_callback_bench_quick_times_the_recording_per_batch_and_a_fit():
    out = bench("callback_bench.py")
    assert re.search(r"^per batch of 64 \(10 classes, 1,077 examples\): recording \d+ us CPU = \d+\.\d\d% of a "
                     r"training step \(\d+\.\d\d ms\)$", out, re.M), out
    assert re.search(r"^fit, CPU per batch .*: [\d.]+ ms without, [\d.]+ ms with train_labels= ", out, re.M), out


def test_startup_bench_quick_shows_no_torch_in_analysis_commands():
    out = bench("startup_bench.py")
    for command in ("dyn --help", "dyn inspect RUN", "dyn analyze stability RUN"):
        line = re.search(rf"^{re.escape(command)} +(\d+\.\d+)  (.*)$", out, re.M)
        assert line, out
        assert "torch" not in line.group(2)


def test_gpu_suite_script_is_valid_and_calls_existing_benchmarks():
    script = (ROOT / "benchmarks" / "gpu_suite.sh").read_text()
    assert subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "gpu_suite.sh")]).returncode == 0
    names = re.findall(r"benchmarks/(\w+\.py) --device", script)
    assert len(names) >= 3, names
    for name in names:
        assert (ROOT / "benchmarks" / name).is_file(), name
        help_text = subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), "--help"],
                                   capture_output=True, text=True, cwd=ROOT).stdout
        assert "--device" in help_text  # every call passes --device cuda
    limits = [int(x) for x in re.findall(r"^step (\d+) ", script, re.M)]
    # one device command runs at most 10 minutes: the steps' limits leave 80 s for the install
    # and the start (a GPU session has 15 minutes in all, the machine's start included)
    assert sum(limits) <= 10 * 60 - 80


def test_append_bench_quick_times_appends_against_a_raw_write():
    out = bench("append_bench.py")
    assert re.search(r"^median append \(ms\): +first 10% [\d.]+, middle [\d.]+, last 10% [\d.]+; "
                     r"last / first = [\d.]+$", out, re.M), out
    assert re.search(r"^raw write of as many bytes: first 10% [\d.]+", out, re.M), out
    assert re.search(r"^growth beyond the raw write's: [+-][\d.]+ ms", out, re.M), out
