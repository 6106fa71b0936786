"""docs/reproduce.md's figure commands draw: each `dyn analyze` command listed there for
Figures 1-7 is run exactly as written (the doc's bash block, globs expanded by bash in a folder
of runs named as the doc names them) on small synthetic runs of the paper's shape: five EMA
networks, epochs 0..180 recorded, weights every 10 epochs, the validation images stored."""

import re
import shlex
import subprocess
from types import SimpleNamespace

import pytest

from dyn.cli import main
from dyn.synthetic import Synthetic

from helpers import ROOT

DOC = ROOT / "docs" / "reproduce.md"
DECAYS = (0.9, 0.99, 0.999, 0.9995, 0.9997)


def figure_commands(cwd):
    """{figure number: dyn arguments} of the doc's `# Figure N` lines, expanded by bash in cwd."""
    blocks = re.findall(r"```bash\n(.*?)```", DOC.read_text(), re.S)
    block = next(b for b in blocks if "# Figure 1" in b)
    script = 'dyn() { printf "dyn"; printf " %q" "$@"; echo; }\n' + block
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True, cwd=cwd).stdout
    figures = [int(n) for n in re.findall(r"^# Figure (\d+)", block, re.M)]
    return dict(zip(figures, (shlex.split(line)[1:] for line in out.splitlines())))


@pytest.fixture(scope="module")
def paper_runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("repro")
    (d / "runs" / "table1").mkdir(parents=True)
    # the runs the commands name (constant and multistep, seed 1111), and a second constant seed
    # for Figure 1's band; the other schedules would only add panels
    for sched, seed in [("constant", 1111), ("multistep", 1111), ("constant", 1234)]:
        cfg = {"model": "resnet20", "dataset": "cifar10", "schedule": sched, "lr": 0.1, "seed": seed, "epochs": 180,
               "decays": list(DECAYS)}
        Synthetic(epochs=181, samples=40, decays=DECAYS, weights_every=10, n_params=100, images=True,
                  seed=seed + len(sched)).write(d / "runs" / "table1" / f"resnet20-cifar10-{sched}-lr0.1-e180-s{seed}.h5",
                                                config=cfg)
    return d


@pytest.mark.slow
def test_each_figure_command_of_the_doc_draws(paper_runs, capsys, monkeypatch):
    commands = figure_commands(paper_runs)
    assert sorted(commands) == [1, 2, 3, 4, 5, 6, 7]
    monkeypatch.chdir(paper_runs)
    for fig, args in commands.items():
        assert args[0] == "analyze" and "*" not in " ".join(args), args  # the globs matched runs
        try:
            main(args)
            code = 0
        except SystemExit as e:
            code = e.code or 0
        cap = capsys.readouterr()
        r = SimpleNamespace(code=code, out=cap.out, err=cap.err)
        assert r.code == 0, (fig, r.err)
        out = paper_runs / args[args.index("--out") + 1]
        assert out.stat().st_size > 5000, (fig, r.err)
        assert f"wrote {out.name}" in r.err
    assert "--from-epoch 90 --to-epoch 180" in " ".join(commands[3])
    assert (paper_runs / "fig7.csv").read_text().count("\n") == 11  # header and the ten samples
