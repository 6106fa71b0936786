"""Make this checkout importable as `dyn` without pip: a folder to put on PYTHONPATH.

    python3 benchmarks/dyn_path.py DEST     # then: PYTHONPATH=DEST python3 -m dyn ...

For a machine with no network whose setuptools is too old for `pip install -e .` (pyproject.toml
needs setuptools>=77). The repository keeps dyn's packages in dynamics/, train/ and analyze/, which
pyproject.toml's package-dir maps to dyn, dyn.train and dyn.analyze; DEST/dyn/ rebuilds that tree
from symbolic links to this checkout's files (edits show through), and a dist-info folder beside it
carries the name, version and entry points, so `dyn`'s subcommands (registered as entry points)
are found. Standard library only; Python >= 3.11 (tomllib).
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build(dest: Path) -> Path:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    dirs = project["tool"]["setuptools"]["package-dir"]  # {"dyn": "dynamics", "dyn.train": "train", ...}
    dest.mkdir(parents=True, exist_ok=True)
    # outermost first: a sub-package's link goes inside its parent's rebuilt folder
    for name in sorted(dirs, key=lambda n: n.count(".")):
        target, source = dest.joinpath(*name.split(".")), ROOT / dirs[name]
        target.mkdir(parents=True, exist_ok=True)
        for entry in source.iterdir():
            if entry.name == "__pycache__" or entry.name.endswith(".egg-info"):
                continue
            link = target / entry.name
            if not link.exists() and not link.is_symlink():
                link.symlink_to(entry)
    meta = project["project"]
    info = dest / f"{re.sub(r'[-_.]+', '_', meta['name'])}-{meta['version']}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n")
    groups = dict(meta.get("entry-points", {}))
    if meta.get("scripts"):
        groups["console_scripts"] = meta["scripts"]
    (info / "entry_points.txt").write_text(
        "".join(f"[{g}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n" for g, eps in groups.items()))
    return dest


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {os.path.basename(sys.argv[0])} DEST")
    print(build(Path(sys.argv[1]).resolve()))
