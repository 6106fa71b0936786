"""benchmarks/train_bench.py --quick still runs and prints its figures (not asserted: they are a
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
