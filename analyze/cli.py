"""`dyn analyze ...` and `dyn table`: the click layer over dyn.analyze.commands.

Importing this module loads click, numpy and h5py (through the commands' modules) and
nothing heavier: matplotlib is imported only when a figure is drawn, pandas only by
`dyn table` and `--lr`, torch never.
"""

from __future__ import annotations

import click

from dyn.analyze.commands.accuracy import accuracy_cmd
from dyn.analyze.commands.agreement import agreement
from dyn.analyze.commands.aum import aum
from dyn.analyze.commands.datamap import datamap
from dyn.analyze.commands.decays import decays
from dyn.analyze.commands.flips import flips
from dyn.analyze.commands.forgetting import forgetting
from dyn.analyze.commands.histogram import histogram
from dyn.analyze.commands.report import report
from dyn.analyze.commands.stability import stability
from dyn.analyze.commands.table import table
from dyn.analyze.commands.weight_diff import weight_diff


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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


for command in (stability, histogram, flips, weight_diff, accuracy_cmd, agreement, decays, report,
                forgetting, datamap, aum):
    analyze.add_command(command)

__all__ = ["analyze", "table"]
