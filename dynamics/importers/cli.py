"""`dyn import`: other projects' checkpoints and prediction dumps as run files.

Importing this module needs neither torch nor h5py; each command loads what it needs.
"""

from __future__ import annotations

from pathlib import Path

import click

from .. import plugins
from ..errors import DynError, UsageError


def _warn(msg: str) -> None:
    click.echo(f"dyn: warning: {msg}", err=True)


@click.group(name="import", context_settings={"help_option_names": ["-h", "--help"]})
def import_():
    """Turn other projects' checkpoints or predictions into runs.

    \b
    dyn import checkpoints  weights (SGD and EMA) from timm, Lightning, torchvision's references,
                            ema-pytorch, torch's AveragedModel, the paper's code, safetensors
    dyn import predictions  per-epoch correctness or predicted labels (the paper's preds/
                            folders, .npy/.npz arrays, CSV or Parquet tables)
    dyn import dynamics     per-example training dynamics: cartography's training_dynamics/,
                            the aum package's full_aum_records.csv, example_forgetting's stats_dict.pkl

    Every `dyn analyze` command then works on the result. Checkpoints are untrusted: torch
    files are loaded with weights_only=True only, never unpickled in full. See docs/import.md.
    """


@import_.command("checkpoints", context_settings={"show_default": True})
@click.argument("sources", nargs=-1)
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Run file to write.")
@click.option("--sgd", metavar="GLOB", help="Files of the SGD (live) weights, one per epoch, paired with --ema.")
@click.option("--ema", metavar="GLOB", help="Files of the EMA weights, one per epoch, paired with --sgd.")
@click.option("--sgd-key", metavar="KEY", help="Where the SGD weights are: an entry (state_dict, model, a/b), "
              "or a key prefix ending in '.' (online_model.); '/' for the whole file.")
@click.option("--ema-key", metavar="KEY", help="Where the EMA weights are, as for --sgd-key; every file must have it.")
@click.option("--decay", type=float, help="The EMA decay, where the files do not record it: names the network "
              "ema-<decay> (else 'ema').")
@click.option("--order", type=click.Choice(["auto", "epoch", "step", "name", "given"]), default="auto",
              help="Order of the files: by the epoch or step they record, by name (natural sort), or as given. "
                   "auto: epoch, else step, else name.")
@click.option("--epoch-offset", type=int, default=0, help="Add this to every imported epoch number.")
@click.option("--strict", is_flag=True, help="Refuse NaN or inf weights (default: warn).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out.")
@click.option("--dry-run", is_flag=True, help="Only print what was found in each file; write nothing.")
@click.option("--evaluate", is_flag=True, help="Evaluate every network on --split (needs torch): "
              "records correctness, predictions and losses.")
@click.option("--model", help="With --evaluate: dyn's model (resnet20, resnet32, ..., resnet50).")
@click.option("--model-factory", metavar="MODULE:FUNCTION",
              help="With --evaluate: your function returning the nn.Module, e.g. mypkg.nets:make_net.")
@click.option("--dataset", default="cifar10", help="With --evaluate: cifar10, digits or synthetic.")
@click.option("--data-dir", default="data", help="With --evaluate: folder holding CIFAR-10 (never downloaded).")
@click.option("--split", "splits", multiple=True, default=("val",),
              help="With --evaluate: split(s) to evaluate on (val, test, train); a comma list or repeated.")
@click.option("--val-size", type=int, help="With --evaluate: validation samples held out (as dyn train).")
@click.option("--batch-size", type=int, default=1000, help="With --evaluate: evaluation batch size.")
@click.option("--device", default="cpu", help="With --evaluate: cpu, cuda or cuda:N.")
def checkpoints(sources, out, sgd, ema, sgd_key, ema_key, decay, order, epoch_offset, strict, overwrite,
                dry_run, evaluate, model, model_factory, dataset, data_dir, splits, val_size, batch_size, device):
    """Import SOURCES (files, folders or globs of .pt .pth .ckpt .bin .pth.tar .safetensors,
    or Hugging Face checkpoint folders) as one run of SGD and EMA weights.

    \b
    Examples:
      dyn import checkpoints output/train/ --out runs/timm.h5            # timm's checkpoint-*.pth.tar
      dyn import checkpoints 'ckpts/model_*.pth' --out runs/tv.h5 --decay 0.9998
      dyn import checkpoints lightning_logs/version_0/checkpoints/ --out runs/pl.h5
      dyn import checkpoints trainer_output/ --out runs/hf.h5          # a Trainer's checkpoint-N/
      dyn import checkpoints --sgd 'w/sgd_*.safetensors' --ema 'w/ema_*.safetensors' --out runs/x.h5
      dyn import checkpoints ckpts/ --dry-run                          # what is where, per file
      dyn import checkpoints ckpts/ --out runs/x.h5 --evaluate --model resnet20 --dataset cifar10

    \b
    Found without being told, per file:
      timm              state_dict (SGD), state_dict_ema or model_ema (EMA)
      torchvision refs  model (SGD), model_ema (an AveragedModel: module. prefix, n_averaged)
      Lightning         state_dict; with EMAWeightAveraging, state_dict is the EMA and
                        current_model_state the SGD weights
      ema-pytorch       ema_model.* (EMA), online_model.* (SGD), step, initted
      the paper's code  model (SGD); a *_averaged_model.pt beside each checkpoint (EMA, decay)
      NeMo              a *-EMA.ckpt beside each checkpoint (EMA)
      plain state_dict  the SGD weights (an AveragedModel's state_dict: the EMA)
      HF folders        checkpoint-N/ (model.safetensors or pytorch_model.bin, sharded
                        through their *.index.json) is one checkpoint, its step and epoch
                        from trainer_state.json; a Trainer's output_dir is its checkpoint-N/
                        folders; ema-<decay>.safetensors beside the model are its EMA
                        (entries model and ema-<decay>: --ema-key chooses among several)
    DDP's module. and torch.compile's _orig_mod. prefixes are removed. --dry-run shows the
    choice; --sgd-key/--ema-key override it.

    \b
    Epochs (0 = the initial weights, k = after k passes over the data): from the 'epoch' the
    file records (+1 for timm, torchvision and Lightning, which store the 0-based epoch just
    finished; as is for the paper's code, which stores last epoch + 1), else the number in
    the file name ('epoch=N', else its last number), else 1, 2, ... in order.

    \b
    Without a model, a state_dict does not say which tensors are buffers: keys ending in
    running_mean, running_var or num_batches_tracked, and integer or bool tensors, are
    recorded as buffers (exactly, float64), the rest as parameters (float32). With --evaluate
    the model's own buffers decide.

    Security: torch files are read with torch.load(weights_only=True) only (plus
    argparse.Namespace, which timm and torchvision store their args in); a file whose pickle
    references any other callable is refused and nothing in it runs. .safetensors files need
    no torch and no unpickling at all: prefer them.
    """
    from .checkpoints import describe, import_checkpoints

    evaluator = None
    given, splits = splits, tuple(dict.fromkeys(x.strip() for v in splits for x in v.split(",")))  # val,test
    if "" in splits:
        raise UsageError(f"--split: an empty split name in {','.join(given)!r}")
    if evaluate:  # the training stage evaluates (models, data); the core finds it by entry point
        Evaluator = plugins.load("dyn.evaluators", "checkpoints", "--evaluate")
        try:
            evaluator = Evaluator(model=model, model_factory=model_factory, dataset=dataset, data_dir=data_dir,
                                  splits=splits, val_size=val_size, batch_size=batch_size, device=device)
        except ModuleNotFoundError as e:
            if not plugins.missing_torch(e):
                raise
            raise DynError(f"--evaluate {plugins.TORCH_HINT}", exit_code=2) from None
    elif model or model_factory:
        raise UsageError("--model/--model-factory only make sense with --evaluate")
    plan, path = import_checkpoints(sources, out, sgd=sgd, ema=ema, sgd_key=sgd_key, ema_key=ema_key,
                                    decay=decay, order=order, epoch_offset=epoch_offset, dry_run=dry_run,
                                    overwrite=overwrite, strict=strict, warn=_warn, evaluator=evaluator)
    if dry_run:
        click.echo("\n".join(describe(plan)))
        return
    recs = plan.records
    click.echo(f"wrote {path}: epochs {recs[0].epoch}..{recs[-1].epoch} ({len(recs)} records) of "
               f"{', '.join(n.name for n in plan.networks)}"
               + (f", evaluated on {', '.join(splits)}" if evaluate else ""))


@import_.command("predictions", context_settings={"show_default": True})
@click.argument("sources", nargs=-1)
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Run file to write.")
@click.option("--net", "nets", multiple=True, metavar="NAME=FILE",
              help="A network's (epochs, samples) .npy array; repeat per network (sgd, ema-0.999, ...).")
@click.option("--labels", type=click.Path(dir_okay=False), help="True labels (.npy, one int per sample): needed "
              "when the arrays hold predicted labels rather than correctness.")
@click.option("--split", default="val", help="Name of the split the predictions are on.")
@click.option("--first-epoch", type=int, default=1, help="Epoch of the first row of arrays that carry no epochs.")
@click.option("--decay", type=float, help="Decay of the paper's *_average.npy EMA: names it ema-<decay> (else 'ema').")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out.")
def predictions(sources, out, nets, labels, split, first_epoch, decay, overwrite):
    """Import per-epoch predictions from SOURCES (a preds/ folder, .npy/.npz, .csv/.parquet).

    \b
    Examples:
      dyn import predictions preds/ --out runs/paper.h5 --decay 0.999      # {epoch}.npy, {epoch}_average.npy
      dyn import predictions --net sgd=sgd.npy --net ema-0.99=ema.npy --out runs/x.h5
      dyn import predictions --net sgd=pred_sgd.npy --labels y_val.npy --out runs/x.h5
      dyn import predictions dump.npz --out runs/x.h5                     # arrays per network, epochs, labels
      dyn import predictions records.parquet --split test --out runs/x.h5

    \b
    Accepted:
      preds/ folder   the paper's code: {e}.npy (SGD), {e}_average.npy (EMA), booleans; file e
                      is written after e + 1 passes over the data: recorded as epoch e + 1
      .npy            (epochs, samples): bool correctness, or integer predicted labels (+ --labels);
                      one network each (--net NAME=FILE, else named by the file)
      .npz            one such array per network, plus optional 'epochs' and 'labels'
      .csv, .parquet  long form: epoch, sample, network, and correct (or predicted and label)

    Without true labels the run stores labels -1 and 0 classes: correctness-based analyses
    (stability, histogram, flips, agreement) work, label-based ones do not. Arrays are read
    without pickles: an object array is refused.
    """
    from .predictions import import_predictions

    named = {}
    for item in nets:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"--net {item!r}: expected NAME=FILE")
        if name in named:
            raise UsageError(f"--net {name!r} is given twice")
        named[name] = path
    path = import_predictions(sources, out, nets=named, labels=labels, split=split, first_epoch=first_epoch,
                              decay=decay, overwrite=overwrite)
    click.echo(f"wrote {path}")


@import_.command("dynamics", context_settings={"show_default": True})
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Run file to write.")
@click.option("--format", "fmt", type=click.Choice(["auto", "cartography", "aum", "toneva"]), default="auto",
              help="auto: a folder is cartography's, a .csv the aum package's, a .pkl example_forgetting's.")
@click.option("--net", default="sgd", help="The network the records are of: sgd, or ema-<decay> for an EMA's.")
@click.option("--split", default="train-presented", help="The split to record them as.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out.")
def dynamics(source, out, fmt, net, split, overwrite):
    """Import per-example training dynamics from SOURCE as a run's train-presented split, for
    `dyn analyze forgetting | datamap | aum`.

    \b
    Examples:
      dyn import dynamics output/training_dynamics/ --out runs/carto.h5     # cartography
      dyn import dynamics aum_out/full_aum_records.csv --out runs/aum.h5    # the aum package
      dyn import dynamics cifar10_stats_dict.pkl --out runs/forget.h5       # example_forgetting

    \b
    Accepted:
      folder   cartography's dynamics_epoch_{e}.jsonl (guid, logits_epoch_{e}, gold): correctness,
               true-class probability and margin from the logits
      .csv     the aum package's full_aum_records.csv (AUMCalculator(..., compressed=False)):
               margins, measurement k as epoch k; aum_values.csv (final values only) is refused
      .pkl     example_forgetting's stats_dict: {id: [losses, accuracies, margins]} per
               presentation, prob = exp(-loss). Read by a restricted unpickler that builds only
               dicts, lists, numbers and strings: any other pickle is refused, nothing is run

    Examples are sorted by id; an integer id is the data-set index (else the ids are kept in
    the config). An example missing from an epoch is recorded as not presented (NaN).
    """
    from .dynamics import import_dynamics

    path = import_dynamics(source, out, fmt=fmt, net=net, split=split, overwrite=overwrite)
    click.echo(f"wrote {path}")
