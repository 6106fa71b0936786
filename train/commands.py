"""The training stage's commands, as `dyn` lists them: name -> ("module:attr", one-line help).

Imports nothing, so `dyn --help` lists commands without loading them (see dyn.cli); the
`dyn.commands` entry point in pyproject.toml names this table.
"""

COMMANDS = {
    "train": ("dyn.train.cli:train", "Train SGD and its EMA networks, recording every epoch to a run file."),
    "sweep": ("dyn.train.sweep:sweep", "Run a grid of trainings (the paper's tables) one after another."),
}
