"""`dyn analyze ...` and `dyn table`: the click layer over dyn.analyze.commands.

Commands load by name, as click's examples/complex does: `dyn analyze stability` imports the
stability command's module and nothing of the others'; `dyn analyze --help` imports none.
matplotlib is imported only when a figure is drawn, pandas only where a table needs it, torch
never.
"""

from __future__ import annotations

import click

from dyn.cli import LazyGroup

# name -> ("module:attr", the line `dyn analyze --help` shows: the command's first help line)
ANALYSES = {
    "stability": ("dyn.analyze.commands.stability:stability", "Prediction stability over epochs (Figures 2 and 6)."),
    "histogram": ("dyn.analyze.commands.histogram:histogram",
                  "Histograms of per-sample misclassification ratios (Figure 3)."),
    "flips": ("dyn.analyze.commands.flips:flips",
              "Correctness flips per sample and barcodes of the least stable samples (Figures 4, 7)."),
    "weight-diff": ("dyn.analyze.commands.weight_diff:weight_diff",
                    "Relative difference of EMA and SGD weights over epochs (Figure 5)."),
    "accuracy": ("dyn.analyze.commands.accuracy:accuracy_cmd", "Accuracy over epochs for every network (Figures 1a-f)."),
    "agreement": ("dyn.analyze.commands.agreement:agreement",
                  "Mismatch of two networks: where their correctness and predicted labels differ."),
    "decays": ("dyn.analyze.commands.decays:decays",
               "Accuracy and stability against the EMA decay (the paper's question, as a curve)."),
    "report": ("dyn.analyze.commands.report:report",
               "Every figure and table for RUNS in one folder, with an index.html showing them."),
    "forgetting": ("dyn.analyze.commands.forgetting:forgetting",
                   "Forgetting events per example (Toneva 2019), for SGD and every EMA network."),
    "datamap": ("dyn.analyze.commands.datamap:datamap",
                "Data maps: confidence, variability, correctness (cartography), SGD and every EMA."),
    "aum": ("dyn.analyze.commands.aum:aum",
            "Area under the margin per example (AUM, Pleiss 2020), SGD and every EMA network."),
    "settling": ("dyn.analyze.commands.settling:settling",
                 "When predictions settle: the fraction of samples whose correctness no longer changes."),
}


@click.group(cls=LazyGroup, lazy=ANALYSES, context_settings={"help_option_names": ["-h", "--help"]})
def analyze():
    """Analyses of runs: stability, misclassification, flips, weight differences, accuracy.

    \b
    Every command takes one or more run files and:
      --net NAMES          networks (default: sgd and every EMA network)
      --split val|test     evaluation split (default val)
      --from-epoch/--to-epoch E   the epoch window
      --out FILE           a figure (.png, .pdf, .svg)
      --csv FILE / --json  the numbers
    Without --json it prints a short table.
    """


__all__ = ["ANALYSES", "analyze"]
