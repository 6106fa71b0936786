"""examples/import_checkpoints.py runs, and the curve it prints is the weight difference of
the checkpoints it saved, computed here by hand from the files."""

import re
import resource
import subprocess
import sys

import numpy as np
import torch

from helpers import ROOT


def test_example_imports_checkpoints_and_draws_the_weight_difference(tmp_path):
    def cpu():  # CPU seconds of finished children: unlike wall time, not inflated by a busy machine
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        return ru.ru_utime + ru.ru_stime

    before = cpu()
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "import_checkpoints.py"), str(tmp_path)],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    seconds = cpu() - before
    assert r.returncode == 0, r.stderr
    assert seconds < 20, f"the example took {seconds:.1f} CPU seconds"
    assert "wrote" in r.stdout and (tmp_path / "run.h5").is_file()
    assert (tmp_path / "weight_diff.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = {int(e): float(v) for e, v in re.findall(r"epoch (\d+): relative weight difference ([\d.]+)", r.stdout)}
    files = sorted(tmp_path.glob("model_*.pth"))
    assert len(printed) == len(files) == 6
    for f in files:
        ck = torch.load(f, weights_only=True)  # our own file
        names = [k for k in ck["model"] if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
        sgd = np.concatenate([ck["model"][k].double().numpy().ravel() for k in names])
        ema = np.concatenate([ck["model_ema"][f"module.{k}"].double().numpy().ravel() for k in names])
        want = np.linalg.norm(ema - sgd) / np.linalg.norm(sgd)
        assert printed[ck["epoch"] + 1] == round(want, 6)
