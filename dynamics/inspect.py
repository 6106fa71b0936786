"""`dyn inspect`: what a run file holds, and whether it is complete, resumable or diverged."""

from __future__ import annotations

import json
import shlex

import click

from .errors import RunFileError
from .safeio import stale


def summary(path) -> dict:
    """Everything `dyn inspect` shows, as plain JSON-able values."""
    from .reader import open_run

    with open_run(path) as run:
        state = run.state
        out = {
            "path": str(run.path),
            "file_size": run.file_size,
            "format": "dyn-run",
            "format_version": run.format_version,
            "dyn_version": run.dyn_version,
            "created": run.created,
            "state": state,
            "diverged_epoch": run.diverged_epoch,
            "writer_alive": run.writer_alive if state == "running" else False,  # None: cannot tell here
            "resumable": run.resumable,
            "config": run.config,
            "networks": [run.network_info(n) for n in run.networks],
            "splits": [],
            "metrics": {"rows": run.rows("metrics"), "columns": run.metric_columns},
        }
        for s in run.splits:
            ep = run.epochs(s)
            final = {}
            if len(ep):
                last = slice(len(ep) - 1, len(ep))
                final = {n: float(run.accuracy(s, n, last)[0]) for n in run.networks if run.has(s, n, "correct")}
            out["splits"].append({
                "name": s, "size": run.split_size(s), "num_classes": run.num_classes(s),
                "images": run.has_images(s),
                "records": len(ep), "first_epoch": _int(ep[:1]), "last_epoch": _int(ep[-1:]),
                "final_accuracy": final,
            })
        we = run.weight_epochs()
        weights = None
        if run.records_weights:
            t = run.param_rows
            weights = {"records": len(we), "first_epoch": _int(we[:1]), "last_epoch": _int(we[-1:]),
                       **_every(we, run.config.get("checkpoint_every")),
                       "params": int(t["size"][t["kind"] == b"param"].sum()),
                       "buffers": int(t["size"][t["kind"] == b"buffer"].sum()), "tensors": len(t)}
        out["weights"] = weights
    return out


@click.command()
@click.argument("run", type=click.Path(dir_okay=True))
@click.option("--json", "as_json", is_flag=True, help="Print everything as one JSON object.")
def inspect(run, as_json):
    """Show what RUN holds: config, networks, splits, epochs, state.

    \b
    The state is one of:
      complete     training finished
      running      a live process is still writing it
      interrupted  its writer was killed: `dyn train --resume --out RUN` continues it
      stopped      stopped cleanly (Ctrl-C, SIGTERM): resumable the same way
      diverged     the loss became NaN or inf at the epoch shown

    \b
    Examples:
      dyn inspect runs/x.h5
      dyn inspect runs/x.h5 --json | jq .splits
    """
    for p in stale(run):  # a killed writer's temporary: said, not removed (inspect never writes)
        click.echo(f"note: {p}: left by a killed writer of {run}; the next command that writes {run} "
                   f"removes it, or remove it yourself: rm -r {shlex.quote(str(p))}", err=True)
    s = summary(run)
    if as_json:
        click.echo(json.dumps(s, indent=2, default=str))
        return
    click.echo(render(s))


def render(s: dict) -> str:
    lines = [f"{s['path']}  ({_size(s['file_size'])}, dyn-run v{s['format_version']}, "
             f"dyn {s['dyn_version']}, created {s['created']})"]
    state = s["state"]
    if state == "diverged":
        state = f"diverged at epoch {s['diverged_epoch']}"
    if s["resumable"]:
        state += f"  (resumable: dyn train --resume --out {s['path']})"
    if state == "running" and s["writer_alive"] is None:
        from .lock import UNKNOWN_LIVENESS

        state += f"  (possibly live: {UNKNOWN_LIVENESS})"
    row = lambda k, v: lines.append(f"{k:<10} {v}")  # noqa: E731
    row("state", state)
    cfg = s["config"]
    if cfg:
        # keys the run does not record (None: an import knows no model or data set) are left out
        keys = [k for k in ("model", "dataset", "schedule", "lr", "epochs", "batch_size", "decays", "seed",
                            "device", "checkpoint_every") if cfg.get(k) is not None]
        row("config", ", ".join(f"{k}={_short(cfg[k])}" for k in keys) or f"{len(cfg)} keys (--json)")
    nets = [f"{n['name']} ({_kind(n)})" for n in s["networks"]]
    row("networks", ", ".join(nets) or "none")
    wn = max([6] + [len(sp["name"]) for sp in s["splits"]])  # e.g. train-augmented
    for i, sp in enumerate(s["splits"]):
        extra = f"{sp['num_classes']} classes" + (", images" if sp["images"] else "")
        epochs = (f"epochs {sp['first_epoch']}..{sp['last_epoch']} ({sp['records']} records)"
                  if sp["records"] else "no epochs yet")
        row("splits" if i == 0 else "", f"{sp['name']:<{wn}} {sp['size']:>9,} samples ({extra}), {epochs}")
    for i, sp in enumerate(s["splits"]):
        if sp["final_accuracy"]:
            accs = ", ".join(f"{n} {a:.4f}" for n, a in sp["final_accuracy"].items())
            row("accuracy" if i == 0 else "", f"{sp['name']:<{wn}} at epoch {sp['last_epoch']}: {accs}")
    w = s["weights"]
    if w:
        if w["records"]:
            every = (f", every {w['every']}" + (f" and at epoch {w['last_epoch']}" if w["and_last"] else "")
                     if w["every"] else "")
            row("weights", f"epochs {w['first_epoch']}..{w['last_epoch']} ({w['records']} records{every}), "
                           f"{w['params']:,} parameters + {w['buffers']:,} buffer values")
        else:
            row("weights", f"none yet ({w['params']:,} parameters per record)")
    row("metrics", f"{s['metrics']['rows']} rows: " + ", ".join(s["metrics"]["columns"][:8])
        + (", ..." if len(s["metrics"]["columns"]) > 8 else ""))
    return "\n".join(lines)


def _kind(n: dict) -> str:
    """What a network is to the analyses: SGD, EMA (with its decay), or other, which no
    default selection includes."""
    if n["kind"] == "ema":
        return f"EMA, decay {n['decay']:g}" if n["decay"] is not None else "EMA, decay unknown"
    return {"sgd": "SGD"}.get(n["kind"], f"kind {n['kind']}, not analysed unless named with --net")


def _int(a):
    return int(a[0]) if len(a) else None


def _every(ep, k=None) -> dict:
    """{"every": the spacing of the weight records, "and_last": whether the last record is off
    that grid}. Training records the last epoch whatever the spacing (--checkpoint-every 10
    --epochs 3 records 0 and 3): that last gap is not the spacing. The config's
    checkpoint_every, where the run has one, says the spacing; else the other gaps."""
    gaps = [int(x) for x in (ep[1:] - ep[:-1])] if len(ep) > 1 else []
    if not gaps:
        return {"every": None, "and_last": False}
    if isinstance(k, int) and k > 0 and all(g == k for g in gaps[:-1]) and gaps[-1] <= k:
        return {"every": k, "and_last": gaps[-1] != k}
    inner = set(gaps[:-1])
    if len(inner) == 1 and gaps[-1] < gaps[0]:
        return {"every": gaps[0], "and_last": True}
    return {"every": gaps[0] if len(set(gaps)) == 1 else None, "and_last": False}


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def _short(v) -> str:
    text = json.dumps(v) if isinstance(v, (list, dict)) else str(v)
    return text if len(text) <= 60 else text[:57] + "..."


__all__ = ["inspect", "summary", "render", "RunFileError"]
