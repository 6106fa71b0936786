"""The paper's tables, from per-run summary records.

A record (one training run) looks like
    {"model": "resnet20", "dataset": "cifar10", "schedule": "constant", "lr": 0.1,
     "seed": 1111, "final": {"sgd": {"test": 0.864, "train": 0.912},
                             "ema-0.9995": {"test": 0.923, "train": 0.983}, ...}}
with accuracies as fractions. Runs that differ only in seed are averaged;
runs that differ in anything else become separate rows, or are refused.

layout="decay" (Table 1): rows schedules, in the paper's order; columns
"No EMA" and one per decay; cells the mean accuracy in % over seeds.
layout="lr" (Table 2): rows learning rates; columns No EMA Train/Test,
EMA Train/Test for one decay, and Increase (%) = (EMA test / No-EMA test - 1) * 100,
taken over the runs that have both.

Every cell keeps its mean, sample std (ddof=1) and number of runs; the
renderers (Markdown, CSV, LaTeX with booktabs, JSON) are written here with
plain pandas/str so that neither jinja2 nor tabulate is needed.
"""

import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dyn.analyze.networks import decay as ema_decay
from dyn.analyze.runs import CONFIG_KEYS, group_seeds

SCHEDULE_ORDER = ("multistep", "step", "cosine", "linear", "constant")
LAYOUTS = ("decay", "lr", "table3")
FORMATS = ("markdown", "csv", "latex", "json")
DETAILS = ("mean", "std", "full")
NO_EMA = "No EMA"
LR_COLUMNS = ("No EMA Train", "No EMA Test", "EMA Train", "EMA Test", "Increase (%)")


@dataclass(frozen=True)
class Table:
    mean: pd.DataFrame  # rows x columns, accuracy in % (NaN where no run)
    std: pd.DataFrame   # same shape; sample std over seeds, NaN for fewer than 2 runs
    n: pd.DataFrame     # same shape; runs behind each cell
    layout: str
    title: str

    def long(self) -> pd.DataFrame:
        """Tidy form: one line per cell, with the row keys, column, mean, std, n."""
        out = []
        for key in self.mean.index:
            k = key if isinstance(key, tuple) else (key,)
            for col in self.mean.columns:
                out.append((*k, col, self.mean.at[key, col], self.std.at[key, col],
                            int(self.n.at[key, col])))
        names = list(self.mean.index.names)
        return pd.DataFrame(out, columns=[*names, "column", "mean", "std", "n"])


def paper_table(records, layout: str = "decay", group_by=None, split: str = "test",
                decay=None, keys=None) -> Table:
    """Table 1 (layout="decay"), Table 2 (layout="lr") or Table 3 (layout="table3") as a
    Table of DataFrames.

    group_by: record keys that make rows (default ("schedule",), or ("lr",) for "lr").
    keys: the keys that identify an experiment (default model, dataset, schedule, lr and
    group_by): records that differ in one of them outside group_by are refused (ValueError),
    as mixing them in one mean would be wrong; records that share all of them are seeds.
    split: the accuracy shown by layout="decay". decay: the EMA network of layouts "lr" and
    "table3" (default: the only decay present). "table3" is Table 3 as printed: rows by
    schedule in the paper's order, No EMA Train/Test and EMA Train/Test, nothing else.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}; got {layout!r}")
    records = list(records)
    if not records:
        raise ValueError("no run records")
    group_by = tuple(group_by or (("lr",) if layout == "lr" else ("schedule",)))
    if layout == "table3" and group_by != ("schedule",):
        raise ValueError(f"layout 'table3' has one row per schedule; cannot group by {', '.join(group_by)}")
    ident = tuple(dict.fromkeys((*(keys if keys is not None else CONFIG_KEYS), *group_by)))
    groups = group_seeds(records, ident)  # validates the keys and refuses repeated seeds
    for i, key in enumerate(ident):
        values = sorted({str(cfg[i]) for cfg in groups})
        if key not in group_by and len(values) > 1:
            raise ValueError(f"records mix {key} values {', '.join(values)}; "
                             f"add {key!r} to group_by or select the runs first")
    rows = {}
    for cfg, runs in groups.items():
        rows[tuple(cfg[ident.index(k)] for k in group_by)] = runs
    keys_ = sorted(rows, key=lambda k: tuple(_order(name, v) for name, v in zip(group_by, k)))
    if layout == "decay":
        columns, cells = _decay_cells(records, [rows[k] for k in keys_], split)
    else:
        columns, cells = _lr_cells(records, [rows[k] for k in keys_], decay)
        if layout == "table3":  # as printed: no Increase column
            columns, cells = columns[:4], [row[:4] for row in cells]
    names = list(group_by)
    if layout == "table3":  # the paper's header and row names
        names, keys_ = ["Schedule"], [(str(k[0]).capitalize(),) for k in keys_]
    index = (pd.Index([k[0] for k in keys_], name=names[0]) if len(names) == 1
             else pd.MultiIndex.from_tuples(keys_, names=names))
    frame = lambda j: pd.DataFrame([[c[j] for c in row] for row in cells],  # noqa: E731
                                   index=index, columns=list(columns))
    if not any(c[2] for row in cells for c in row):
        raise ValueError(f"no run record has {split!r} accuracies under 'final'")
    first = records[0]
    what = split if layout == "decay" else "train/test"
    title = (f"{what} accuracy (%) of {first['model']} on {first['dataset']}, mean over seeds"
             if "model" in first and "dataset" in first and not {"model", "dataset"} & set(group_by)
             else f"{what} accuracy (%), mean over seeds")
    return Table(frame(0).astype(float), frame(1).astype(float), frame(2).astype(int), layout, title)


def render(table: Table, fmt: str = "markdown", detail: str = "mean", digits: int = 1) -> str:
    """The table as text. detail: "mean" (the paper's cells), "std" (mean ± std),
    "full" (mean ± std (n=k)); in "mean", a cell with fewer runs than the
    table's fullest cell says so with "(n=k)". CSV and JSON always carry all three."""
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {', '.join(FORMATS)}; got {fmt!r}")
    if detail not in DETAILS:
        raise ValueError(f"detail must be one of {', '.join(DETAILS)}; got {detail!r}")
    if fmt == "markdown":
        return to_markdown(table, detail, digits)
    if fmt == "latex":
        return to_latex(table, detail, digits)
    return to_csv(table) if fmt == "csv" else to_json(table)


def to_markdown(table: Table, detail: str = "mean", digits: int = 1) -> str:
    """Pipe table; the best cell of each column in **bold**, as in the paper."""
    head = [*table.mean.index.names, *map(str, table.mean.columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, texts in _bold_rows(table, detail, digits, "—", "±", lambda t: f"**{t}**"):
        lines.append("| " + " | ".join([*key, *texts]) + " |")
    return "\n".join(lines) + "\n"


def to_latex(table: Table, detail: str = "mean", digits: int = 1) -> str:
    """booktabs tabular; the best cell of each column in bold (ties at the shown
    precision all bold, as in the paper)."""
    nk, cols = table.mean.index.nlevels, list(table.mean.columns)
    lines = [r"\begin{tabular}{" + "l" * nk + "r" * len(cols) + "}", r"\toprule"]
    names = [_tex(str(x)) for x in table.mean.index.names]
    if table.layout == "decay" and len(cols) > 1:
        lines.append(" & " * (nk + 1) + rf"\multicolumn{{{len(cols) - 1}}}{{c}}{{Decay rate ($\lambda$)}} \\")
        lines.append(rf"\cmidrule(lr){{{nk + 2}-{nk + len(cols)}}}")
        head = [*names, *map(_tex, map(str, cols))]
    elif table.layout in ("lr", "table3"):
        names = [r"$\eta$" if x == "lr" else x for x in names]
        lines.append(" & " * nk + r"\multicolumn{2}{c}{No EMA} & \multicolumn{2}{c}{EMA}"
                     + (r" & \\" if table.layout == "lr" else r" \\"))
        lines.append(rf"\cmidrule(lr){{{nk + 1}-{nk + 2}}} \cmidrule(lr){{{nk + 3}-{nk + 4}}}")
        head = [*names, "Train", "Test", "Train", "Test"] + ([r"Increase (\%)"] if table.layout == "lr" else [])
    else:
        head = [*names, *map(_tex, map(str, cols))]
    lines += [" & ".join(head) + r" \\", r"\midrule"]
    for key, cells in _bold_rows(table, detail, digits, "--", r"$\pm$", lambda t: rf"\textbf{{{t}}}"):
        lines.append(" & ".join([*map(_tex, key), *cells]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def best_cells(table: Table, digits: int = 1) -> pd.DataFrame:
    """True where a cell is the best of its column at the shown precision (ties all best);
    a column with fewer than two filled cells has no best (there is nothing to compare)."""
    best = pd.DataFrame(False, index=table.mean.index, columns=table.mean.columns)
    for col in table.mean.columns:
        shown = [(i, float(f"{m:.{digits}f}")) for i, (m, k) in enumerate(zip(table.mean[col], table.n[col]))
                 if k > 0]
        if len(shown) < 2:
            continue
        top = max(v for _, v in shown)
        for i, v in shown:
            if v == top:
                best.iloc[i, best.columns.get_loc(col)] = True
    return best


def _bold_rows(table, detail, digits, dash, pm, bold):
    best = best_cells(table, digits)
    for i, (key, texts) in enumerate(_text_rows(table, detail, digits, dash=dash, pm=pm)):
        yield key, [bold(t) if best.iat[i, j] else t for j, t in enumerate(texts)]


def to_csv(table: Table) -> str:
    """Tidy CSV: row keys, column, mean, std, n (full precision)."""
    return table.long().to_csv(index=False, lineterminator="\n")


def to_json(table: Table) -> str:
    """{"title", "layout", "index", "columns", "rows": [{"key": {...}, "cells": {...}}]}; NaN -> null."""
    num = lambda x: None if x is None or (isinstance(x, float) and math.isnan(x)) else x  # noqa: E731
    rows = []
    for key in table.mean.index:
        k = key if isinstance(key, tuple) else (key,)
        rows.append({"key": {name: _plain(v) for name, v in zip(table.mean.index.names, k)},
                     "cells": {str(c): {"mean": num(float(table.mean.at[key, c])),
                                        "std": num(float(table.std.at[key, c])),
                                        "n": int(table.n.at[key, c])} for c in table.mean.columns}})
    doc = {"title": table.title, "layout": table.layout, "index": list(table.mean.index.names),
           "columns": [str(c) for c in table.mean.columns], "rows": rows}
    return json.dumps(doc, indent=2, allow_nan=False) + "\n"


# -- building ---------------------------------------------------------------------------

def _accuracy(record, network, split):
    try:
        x = float(record["final"][network][split])
    except (KeyError, TypeError):
        return None
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"accuracies must be fractions in [0, 1]; seed {record['seed']} "
                         f"{network} {split} is {x}")
    return 100.0 * x


def _stats(values):
    v = np.asarray([x for x in values if x is not None], dtype=float)
    if not v.size:
        return (np.nan, np.nan, 0)
    return (float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else np.nan, int(v.size))


def _decay_cells(records, groups, split):
    nets = {net for r in records for net in r.get("final", {})}
    emas = sorted((n for n in nets if ema_decay(n) is not None), key=ema_decay)
    columns = [NO_EMA, *(n[4:] for n in emas)]
    cells = [[_stats(_accuracy(r, net, split) for r in runs) for net in ["sgd", *emas]]
             for runs in groups]
    return columns, cells


def _lr_cells(records, groups, decay):
    emas = sorted({n for r in records for n in r.get("final", {}) if ema_decay(n) is not None},
                  key=ema_decay)
    if decay is None:
        if len(emas) != 1:
            raise ValueError(f"records hold EMA decays {', '.join(e[4:] for e in emas) or 'none'}; "
                             "pass decay=")
        ema = emas[0]
    else:
        match = [e for e in emas if ema_decay(e) == float(decay)]
        if not match:
            raise ValueError(f"no EMA network with decay {decay}; records hold "
                             f"{', '.join(e[4:] for e in emas) or 'none'}")
        ema = match[0]
    cells = []
    for runs in groups:
        acc = lambda net, split: [_accuracy(r, net, split) for r in runs]  # noqa: E731
        both = [(s, e) for s, e in zip(acc("sgd", "test"), acc(ema, "test"))
                if s is not None and e is not None]
        inc = ((np.mean([e for _, e in both]) / np.mean([s for s, _ in both]) - 1.0) * 100.0
               if both else np.nan)
        cells.append([_stats(acc("sgd", "train")), _stats(acc("sgd", "test")),
                      _stats(acc(ema, "train")), _stats(acc(ema, "test")),
                      (float(inc), np.nan, len(both))])
    return list(LR_COLUMNS), cells


def _order(key, value):
    if key == "schedule":
        s = str(value)
        return (SCHEDULE_ORDER.index(s) if s in SCHEDULE_ORDER else len(SCHEDULE_ORDER), s)
    if isinstance(value, (int, float)):
        return (0, float(value), "")
    return (1, 0.0, str(value))


# -- rendering --------------------------------------------------------------------------

def _text_rows(table, detail, digits, dash, pm):
    full = int(table.n.values.max()) if table.n.size else 0
    for key in table.mean.index:
        k = key if isinstance(key, tuple) else (key,)
        texts = []
        for col in table.mean.columns:
            m, s, n = table.mean.at[key, col], table.std.at[key, col], int(table.n.at[key, col])
            if n == 0:
                texts.append(dash)
                continue
            t = f"{m:.{digits}f}"
            if detail in ("std", "full") and not math.isnan(s):
                t += f" {pm} {s:.{digits}f}"
            if detail == "full" or n < full:
                t += f" (n={n})"
            texts.append(t)
        yield [_label(v) for v in k], texts


def _label(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _plain(v):
    return v.item() if isinstance(v, np.generic) else v


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#",
        "$": r"\$", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _tex(s: str) -> str:
    if len(s) > 1 and s.startswith("$") and s.endswith("$"):  # already maths
        return s
    return "".join(_TEX.get(ch, ch) for ch in s)
