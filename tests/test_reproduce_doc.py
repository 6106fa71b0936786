"""docs/reproduce.md's commands are the paper's runs: the same as `dyn sweep --preset ... --print`.

The doc's bash blocks run in bash with `dyn` replaced by a function that prints its arguments,
so the loops expand exactly as a user's shell expands them; each command is then parsed by
`dyn train`'s own option parser and compared, option by option (defaults filled in), with the
commands the sweep presets print.
"""

import re
import shlex
import subprocess

import pytest

from helpers import ROOT, run_dyn
from dyn.train.cli import train

DOC = ROOT / "docs" / "reproduce.md"
IGNORED = ("data_dir", "resume")  # where the data is, and how a rerun continues, are not the run


def doc_commands():
    blocks = re.findall(r"```bash\n(.*?)```", DOC.read_text(), re.S)
    script = 'dyn() { printf "dyn"; printf " %q" "$@"; echo; }\n' + "\n".join(blocks)
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout
    return [shlex.split(line)[1:] for line in out.splitlines()]


def parsed(args):
    """`dyn train ARGS` as the options its parser gives the command, defaults included."""
    assert args[0] == "train", args
    ctx = train.make_context("train", list(args[1:]))
    return {k: v for k, v in ctx.params.items() if k not in IGNORED}


@pytest.mark.parametrize("preset, n", [("table1", 15), ("table2", 6), ("table3", 3)])
def test_doc_commands_are_the_sweep_presets_runs(preset, n):
    r = run_dyn("sweep", "--preset", preset, "--print")
    assert r.returncode == 0, r.stderr
    want = [parsed(shlex.split(line)[1:]) for line in r.stdout.splitlines()]
    got = [parsed(c) for c in doc_commands() if c[0] == "train" and f"runs/{preset}/" in " ".join(c)]
    assert len(want) == len(got) == n
    key = lambda p: str(p["out"])  # noqa: E731
    assert sorted(got, key=key) == sorted(want, key=key)


def test_doc_table_commands_name_existing_options():
    tables = [c for c in doc_commands() if c[0] == "table"]
    assert len(tables) == 3
    help_text = run_dyn("table", "--help").stdout
    for c in tables:
        for flag in (w for w in c if w.startswith("--")):
            assert flag in help_text, flag
