"""Start-up cost of the commands users run most: whole-process time and what they import.

`dyn --help`, `dyn inspect RUN` and `dyn analyze stability RUN` on a small synthetic run, each
in a fresh interpreter, best of R runs; and whether torch / matplotlib / h5py were imported
(analysis never imports torch; matplotlib only when drawing). Target: `dyn --help` < 0.5 s.

    python benchmarks/startup_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dyn.synthetic import Synthetic

PROBE = ("import sys, json\nfrom dyn.cli import main\ntry:\n    main(sys.argv[1:])\n"
         "except SystemExit:\n    pass\n"
         "sys.stderr.write('MODULES=' + json.dumps(sorted(m for m in sys.modules "
         "if m.split('.')[0] in ('torch', 'matplotlib', 'h5py', 'pandas', 'scipy'))) + '\\n')\n")


def timed(args, repeat):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "dyn", *args], capture_output=True, text=True)
        best = min(best, time.perf_counter() - t)
        if r.returncode not in (0, None):
            raise SystemExit(f"dyn {' '.join(args)} failed: {r.stderr}")
    probe = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True)
    line = [l for l in probe.stderr.splitlines() if l.startswith("MODULES=")]
    mods = json.loads(line[-1][8:]) if line else []
    return best, {m.split(".")[0] for m in mods}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    repeat = 2 if args.quick else 7
    with tempfile.TemporaryDirectory() as d:
        run = str(Synthetic(epochs=20, samples=1000, splits=("val",)).write(Path(d) / "run.h5"))
        bare = timed(["--version"], repeat)[0]
        python = min(_python(repeat) for _ in range(1))
        print(f"startup_bench: python {sys.version.split()[0]}, {os.cpu_count()} CPUs, best of {repeat}")
        print(f"{'command':<34} {'seconds':>8}  imports (of torch, matplotlib, h5py, pandas, scipy)")
        print(f"{'python -c pass':<34} {python:>8.3f}")
        for label, argv in (("dyn --help", ["--help"]), ("dyn inspect RUN", ["inspect", run]),
                            ("dyn analyze stability RUN", ["analyze", "stability", run])):
            try:
                secs, mods = timed(argv, repeat)
            except SystemExit as e:
                print(f"{label:<34} {'n/a':>8}  ({str(e).splitlines()[0][:60]})")
                continue
            flag = "" if "torch" not in mods else "  <- torch imported!"
            print(f"{label:<34} {secs:>8.3f}  {', '.join(sorted(mods)) or 'none'}{flag}")
            if label == "dyn --help":
                print(f"{'':<34} {'':>8}  target < 0.5 s: {'met' if secs < 0.5 else 'NOT met'}")
        print(f"(dyn --version: {bare:.3f} s)")


def _python(repeat):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"])
        best = min(best, time.perf_counter() - t)
    return best


if __name__ == "__main__":
    main()
