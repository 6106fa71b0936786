"""The `dyn analyze` commands, one module each: thin layers between flags and the analyses.

Each module holds one dyn.analyze.command.Analysis subclass (compute, table, records,
document, plot), so that `dyn analyze report` and the Python API can run them all, and the
click command, which calls its run().
"""

# The analysis stage's commands, as `dyn` lists them: name -> ("module:attr", one-line help).
# Named by the `dyn.commands` entry point (pyproject.toml); importing this package loads nothing.
COMMANDS = {
    "analyze": ("dyn.analyze.cli:analyze", "Stability, misclassification, flips, weight differences of runs."),
    "table": ("dyn.analyze.commands.table:table", "The paper's tables from a set of runs (Markdown, CSV, LaTeX)."),
    "posthoc": ("dyn.analyze.posthoc_cli:posthoc_cmd", "Add post-hoc EMA networks of any decay, synthesized from a run's snapshots."),
}
