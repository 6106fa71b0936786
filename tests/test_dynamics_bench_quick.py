"""benchmarks/dynamics_bench.py --quick still runs and prints its figures (not asserted: they are
a machine's, for benchmarks/README.md)."""

import re
import subprocess
import sys

import pytest

from tests.helpers import ROOT


@pytest.mark.slow
def test_dynamics_bench_quick_prints_times_ratios_and_memory():
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "dynamics_bench.py"), "--quick"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = dict((m[0], m[1:]) for m in re.findall(r"^(read|forgetting|datamap|aum) +([\d.]+) +([\d.]+) +(\d+) +[\d.]+ +[\d.]+$",
                                                   r.stdout, re.M))
    assert set(rows) == {"read", "forgetting", "datamap", "aum"}, r.stdout
    assert all(float(t) > 0 and int(mb) > 0 for t, _, mb in rows.values())
    assert "12,812 examples x 10 epochs x 6 networks" in r.stdout
