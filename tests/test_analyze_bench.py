"""benchmarks/analyze_bench.py still runs (tiny sizes; its figures are for the issue, not asserted)."""

import re
import subprocess
import sys

from helpers import ROOT


def test_benchmark_runs_and_prints_ratios_and_memory(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "analyze_bench.py"), "--samples", "4001",
                        "--epochs", "30", "--networks", "3", "--repeat", "1", "--file", str(tmp_path / "b.h5")],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "4,001 samples x 30 epochs x 3 networks" in r.stdout and "floor = " in r.stdout
    for name in ("stability", "histogram", "flips", "flips+codes"):
        row = re.search(rf"^{re.escape(name)} .* (\d+\.\d\d)x +(\d+\.\d\d)x +(\d+)$", r.stdout, re.M)
        assert row and float(row.group(1)) > 0 and float(row.group(2)) > 0 and int(row.group(3)) > 10, r.stdout
