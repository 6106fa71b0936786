"""Where the numbers and figures of a command go: checked paths, atomic files, JSON, text tables.

Every output path is checked before any work is done (a bad --out must not cost a pass over
the data), and every file is written to a temporary name beside it and renamed into place,
so a failure never leaves a partial file.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np

from dyn import fs, safeio
from dyn.analyze.plot.save import target as figure_target
from dyn.errors import DynError, UsageError


def check_writable(path, flag: str) -> Path:
    """The path, or a one-line UsageError when a file cannot be created there (dyn.fs); creates nothing."""
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{flag} {p}: is a directory")
    try:
        fs.check_writable(p)
    except fs.NotWritable as e:  # in the words of the analysis commands
        raise UsageError(f"{flag} {p}: " + (f"cannot write in {e.folder} ({e.why.lower()})" if e.why
                                              else f"{e.folder} is not a directory")) from None
    return p


def check_figure(path, flag: str = "--out") -> Path:
    """A figure path that plot.save accepts (.png added when there is no extension), writable."""
    try:
        p, _ = figure_target(path)
    except ValueError:
        p = Path(path)
        raise UsageError(f"{flag} {p}: a figure is .png, .pdf or .svg, not {p.suffix}") from None
    return check_writable(p, flag)


def figure_paths(out: Path, names: list[str]) -> list[Path]:
    """One figure per run: `out` itself for one run, else out's name with each run's name added."""
    if len(names) == 1:
        return [out]
    return [out.with_name(f"{out.stem}-{n}{out.suffix}") for n in names]


def write_text(path, text: str, flag: str) -> Path:
    """Write atomically: a temporary file beside `path`, renamed over it (dyn.safeio)."""
    p = Path(path)
    try:
        return safeio.write_bytes(p, text.encode("utf-8"), label=f"{flag} {p}")
    except OSError as e:  # the folder cannot be made
        raise safeio.write_error(p, e, label=f"{flag} {p}") from None


def draw(fn, path, flag: str = "--out"):
    """Call a drawing function (which saves atomically), turning its errors into one line."""
    try:
        return fn(path)
    except OSError as e:
        raise safeio.write_error(path, e, label=f"{flag} {path}") from None
    except ValueError as e:
        raise DynError(f"{flag} {path}: cannot draw: {e}") from None


def csv_text(rows: list[dict], columns: list[str]) -> str:
    """CSV with a header; NaN and None as empty cells, floats at full precision."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow(["" if _missing(r.get(c)) else _plain(r.get(c)) for c in columns])
    return buf.getvalue()


def json_text(doc) -> str:
    """JSON of plain values; numpy scalars and arrays become numbers and lists, NaN null."""
    return json.dumps(_jsonable(doc), indent=2, allow_nan=False) + "\n"


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return [_jsonable(v) for v in x.tolist()]
    if isinstance(x, Path):
        return str(x)
    x = _plain(x)
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _plain(x):
    return x.item() if isinstance(x, np.generic) else x


def _missing(x) -> bool:
    return x is None or (isinstance(x, (float, np.floating)) and math.isnan(x))


def text_table(columns: list[str], rows: list[list]) -> str:
    """Aligned plain-text columns; columns of numbers right-aligned; NaN and None as "—"."""
    cells = [[str(c) for c in columns]] + [["—" if _missing(v) else str(_plain(v)) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    right = [all(_number(r[i]) or r[i] == "—" for r in cells[1:]) for i in range(len(columns))]
    return "\n".join("  ".join(v.rjust(w) if rj else v.ljust(w) for v, w, rj in zip(r, widths, right)).rstrip()
                     for r in cells)


def fmt(x, digits: int = 4) -> str:
    """A number as a table shows it; NaN and None as "—"."""
    return "—" if _missing(x) else f"{float(x):.{digits}f}"


def _number(s: str) -> bool:
    try:
        float(s.rstrip("%"))
        return True
    except ValueError:
        return False
