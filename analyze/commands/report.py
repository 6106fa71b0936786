"""`dyn analyze report`: every figure and table of `dyn analyze` and `dyn table` for a set of
runs, and an index.html that shows them on one page.

Everything is built in a hidden folder inside DIR and moved into place at the end (index.html
last), so a failure leaves no partial file, nor the folders it made for DIR. An analysis a run
cannot support (no weights, a single epoch) is skipped with its reason shown on the page; a bad
flag stops the report.
"""

from __future__ import annotations

import html
from dataclasses import replace
from pathlib import Path

import click

from dyn.analyze import inputs, networks, output
from dyn.analyze.commands.accuracy import AccuracyCommand
from dyn.analyze.commands.agreement import AgreementCommand
from dyn.analyze.commands.aum import AUMCommand
from dyn.analyze.commands.datamap import DataMapCommand
from dyn.analyze.commands.flips import MAX_BARCODES, FlipsCommand
from dyn.analyze.commands.forgetting import ForgettingCommand
from dyn.analyze.commands.histogram import HistogramCommand
from dyn.analyze.commands.settling import SettlingCommand
from dyn.analyze.commands.stability import StabilityCommand
from dyn.analyze.commands.weight_diff import WeightDiffCommand
from dyn.analyze.naming import name_runs
from dyn.analyze.options import SharedOptions, net_option, parse_nets, split_option, window_options
from dyn import safeio
from dyn.errors import DiskFull, DynError, UsageError, WriteFailed

PER_RUN = [("stability", StabilityCommand(), "Prediction stability (Figures 2, 6)"),
           ("histogram", HistogramCommand(), "Misclassification ratio (Figure 3)"),
           ("flips", FlipsCommand(), "Least stable samples (Figures 4, 7)"),
           ("agreement", AgreementCommand(), "Mismatch of two networks"),
           ("settling", SettlingCommand(), "When predictions settle (fraction of samples settled, and settled right)")]
# the training set's per-sample dynamics, for runs that record them (dyn train --record-train[-every K])
DYNAMICS = [("forgetting", ForgettingCommand(), "Forgetting events per example (Toneva et al. 2019)"),
            ("datamap", DataMapCommand(), "Data maps (Swayamdipta et al. 2020)"),
            ("aum", AUMCommand(), "Area under the margin (Pleiss et al. 2020)")]


class Page:
    """The sections of index.html, and the files written into the build folder."""

    def __init__(self, folder: Path, ext: str):
        self.folder, self.ext, self.parts, self.files = folder, ext, [], []

    def section(self, title: str):
        self.parts.append(f"<h2>{html.escape(title)}</h2>")

    def add(self, name: str, analysis, result, caption: str, **draw_kw):
        fig = self.folder / f"{name}{self.ext}"
        analysis.draw(result, fig, **draw_kw)
        columns, rows = analysis.records(result)
        output.write_text(self.folder / f"{name}.csv", output.csv_text(rows, columns), "--out-dir")
        self.files += [fig.name, f"{name}.csv"]
        src = html.escape(fig.name)
        img = (f'<img src="{src}" alt="{html.escape(caption)}">' if self.ext != ".pdf"
               else f'<embed src="{src}" type="application/pdf" width="100%" height="500">')
        self.parts.append(f"<figure>{img}<figcaption>{html.escape(caption)} · "
                          f'<a href="{html.escape(name)}.csv">numbers (CSV)</a></figcaption></figure>'
                          f"<pre>{html.escape(analysis.table(result))}</pre>")

    def skip(self, what: str, why: str):
        self.parts.append(f'<p class="skip">{html.escape(what)}: skipped — {html.escape(why)}</p>')
        click.echo(f"note: {what}: skipped: {why}", err=True)

    def text(self, name: str, text: str, show: str):
        output.write_text(self.folder / name, text, "--out-dir")
        self.files.append(name)
        self.parts.append(show)


def build(runs, opts: SharedOptions, page: Page, top: int, rank_by: str, bins: int):
    infos = name_runs(runs)
    _table(runs, page)
    page.section("Accuracy over epochs (Figure 1)")
    with_lr = all("lr" in run.metric_columns for run in runs)
    accuracy, weight_diff = AccuracyCommand(), WeightDiffCommand()
    _try(page, "accuracy", lambda: page.add("accuracy", accuracy, accuracy.compute(runs, opts, lr=with_lr),
                                             "Accuracy, mean and band over seeds"))
    page.section("Weight difference (Figure 5)")
    have = [run for run in runs if run.has_weights]
    if have:
        _try(page, "weight-diff", lambda: page.add("weight-diff", weight_diff, weight_diff.compute(have, opts),
                                                    "||EMA - SGD|| / ||SGD||"))
    else:
        page.skip("weight-diff", "no run records weights")
    for run, info in zip(runs, infos):
        page.section(f"Run {info.label} ({info.path})")
        for name, analysis, caption in PER_RUN:
            params = {"flips": {"top": top, "rank_by": rank_by, "barcodes": True}, "histogram": {"bins": bins},
                      "agreement": {"bins": bins, "pair": lambda r: _pair(r, opts.nets)}}.get(name, {})
            _try(page, f"{name} of {info.label}", lambda: page.add(
                f"{name}-{info.name}", analysis, _with_info(analysis, analysis.compute([run], opts, **params), info),
                caption))
        if not {"train-presented", "train"} & set(run.splits):
            continue
        on_train = replace(opts, split=None)  # each command's default: train-presented, else train
        for name, analysis, caption in DYNAMICS:
            _try(page, f"{name} of {info.label}", lambda: page.add(
                f"{name}-{info.name}", analysis, _with_info(analysis, analysis.compute([run], on_train), info),
                caption))


def _with_info(analysis, result, info):
    for r in analysis.run_results(result):  # computed one run at a time: keep the labels of the whole set
        r.info = info
    return result


def _pair(run, nets):
    chosen = networks.choose(run, nets)
    if len(chosen) < 2:
        raise DynError(f"{run.path}: agreement needs two networks; chosen: {', '.join(chosen)}")
    return chosen[0], chosen[-1]  # sgd and the EMA of the highest decay, by default


def _try(page, what, fn):
    try:
        fn()
    except (UsageError, DiskFull, WriteFailed):  # a report that cannot be written is a failure
        raise
    except DynError as e:
        page.skip(what, str(e))


def _table(runs, page):
    from dyn.analyze.commands.table import build, with_notes
    from dyn.analyze.tables import render

    page.section("Final accuracy (Table 1)")
    notes = []
    try:  # rows: schedule and whatever else the runs differ in (dyn.analyze.runs.pool)
        t = build(runs, "decay", None, "test", notes=notes)
    except DynError as e:
        page.skip("table", str(e))
        return
    notes = list(dict.fromkeys(notes))
    md = render(t, "markdown", "full")
    page.text("table.md", with_notes(md, t.title, notes, "markdown"), _md_html(md, t.title))
    for fmt, ext in (("csv", "csv"), ("latex", "tex"), ("json", "json")):
        output.write_text(page.folder / f"table.{ext}", with_notes(render(t, fmt, "full"), t.title, notes, fmt),
                          "--out-dir")
        page.files.append(f"table.{ext}")
    for note in dict.fromkeys(notes):
        page.parts.append(f'<p class="skip">note: {html.escape(note)}</p>')


def _md_html(md: str, title: str) -> str:
    lines = [ln.strip().strip("|").split("|") for ln in md.strip().splitlines()]
    head, body = lines[0], lines[2:]
    def cell(tag, x):
        x = x.strip()
        bold = len(x) > 4 and x.startswith("**") and x.endswith("**")  # the best of its column
        text = f"<b>{html.escape(x[2:-2])}</b>" if bold else html.escape(x)
        return f"<{tag}>{text}</{tag}>"

    rows = "".join("<tr>" + "".join(cell("td", x) for x in r) + "</tr>" for r in body)
    return (f"<table><caption>{html.escape(title)}</caption><tr>{''.join(cell('th', x) for x in head)}</tr>"
            f'{rows}</table><p><a href="table.md">Markdown</a> · <a href="table.tex">LaTeX</a> · '
            f'<a href="table.csv">CSV</a> · <a href="table.json">JSON</a></p>')


STYLE = ("body{font-family:Georgia,serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}"
         "img{max-width:100%}figure{margin:1em 0}figcaption{font-size:90%;color:#555}"
         "pre{font-size:80%;background:#f6f6f6;padding:.5em;overflow-x:auto}"
         "table{border-collapse:collapse}td,th{border-bottom:1px solid #ccc;padding:.2em .6em;text-align:right}"
         ".skip{color:#a33}")


def index(runs, page: Page) -> str:
    items = "".join(f"<li><code>{html.escape(str(r.path))}</code>: {html.escape(r.state)}, networks "
                    f"{html.escape(', '.join(r.networks))}</li>" for r in runs)
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>dyn report</title><style>{STYLE}'
            f"</style></head><body><h1>dyn report</h1><ul>{items}</ul>{''.join(page.parts)}</body></html>\n")


@click.command()
@click.argument("runs", nargs=-1, required=True, metavar="RUNS...", type=click.Path(dir_okay=True))
@click.option("--out-dir", required=True, type=click.Path(), metavar="DIR",
              help="Folder for the figures, CSV files, tables and index.html (created if needed).")
@net_option
@split_option
@window_options
@click.option("--format", "fmt", type=click.Choice(["png", "svg", "pdf"]), default="png", show_default=True,
              help="Figure format.")
@click.option("--top", type=click.IntRange(1, MAX_BARCODES), default=10, show_default=True,
              help="Barcodes per run.")
@click.option("--rank-by", type=click.Choice(["sgd", "ema", "sum", "stability"]), default="sum", show_default=True)
@click.option("--bins", type=click.IntRange(1, 1000), default=20, show_default=True)
def report(runs, out_dir, nets, split, from_epoch, to_epoch, fmt, top, rank_by, bins):
    """Every figure and table for RUNS in one folder, with an index.html showing them.

    Table 1 of the runs; accuracy over epochs (with lr when the runs record it); weight
    differences; and per run stability, misclassification histogram, barcodes of the least
    stable samples, the SGD/EMA mismatch (sgd against the EMA network of highest decay, or
    the first and last of --net) and when predictions settle; for a run that records the
    training set's dynamics, forgetting, data maps and AUM on it. Each figure has its
    numbers beside it as CSV.

    \b
    Examples:
      dyn analyze report runs/table1/*.h5 --out-dir report/
      dyn analyze report runs/x.h5 --out-dir report/ --net sgd,ema-0.9995 --format svg
    """
    target = Path(out_dir)
    if target.exists() and not target.is_dir():
        raise UsageError(f"--out-dir {target}: exists and is not a folder")
    output.check_writable(target / "index.html", "--out-dir")
    opts = SharedOptions(runs=runs, nets=parse_nets(nets), split=split, first=from_epoch, last=to_epoch,
                  out=None, csv=None, as_json=False)
    made = []  # the folders this report creates, deepest first: removed again if it fails
    for folder in (target, *target.parents):
        if folder.exists():
            break
        made.append(folder)
    done = False
    try:
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DynError(f"--out-dir {target}: cannot create: {e.strerror or e}") from None
        # built in a temporary folder (a killed report's is removed by the next one), moved
        # into place only once complete, index.html last: a failure leaves an earlier report
        with safeio.staged_dir(target / "index.html", what="--out-dir: writing the report") as work:
            page = Page(work, f".{fmt}")
            with inputs.open_runs(runs) as opened:
                build(opened, opts, page, top, rank_by, bins)
                output.write_text(work / "index.html", index(opened, page), "--out-dir")
            for name in page.files:
                safeio.place(work / name, target / name)
        done = True
    except OSError as e:
        raise safeio.write_error(target, e, "--out-dir: writing the report") from None
    except (DiskFull, WriteFailed) as e:  # said of a file in the temporary folder: say it of DIR
        where, _, rest = str(e).partition(": ")
        earlier = "an earlier report there is unchanged" if not made else "nothing is left"
        raise type(e)(f"--out-dir {target}: the report is not written ({earlier}): {Path(where).name}: {rest}") from None
    finally:
        for folder in made if not done else ():
            try:
                folder.rmdir()
            except OSError:  # not empty (another writer), or gone
                break
    click.echo(f"wrote {target / 'index.html'} ({len(page.files)} files beside it)", err=True)
