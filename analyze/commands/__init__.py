"""The `dyn analyze` commands, one module each: thin layers between flags and the analyses.

Each module has the same five functions, so that `dyn analyze report` can run them all:
compute(runs, opts, **params) -> result (numbers only; runs are open during it),
records(result) -> (CSV columns, rows), document(result) -> JSON-able dict,
table(result) -> the short text table, draw(result, out) -> [figure paths];
and the click command, which calls dyn.analyze.options.execute.
"""

# The analysis stage's commands, as `dyn` lists them: name -> ("module:attr", one-line help).
# Named by the `dyn.commands` entry point (pyproject.toml); importing this package loads nothing.
COMMANDS = {
    "analyze": ("dyn.analyze.cli:analyze", "Stability, misclassification, flips, weight differences of runs."),
    "table": ("dyn.analyze.cli:table", "The paper's tables from a set of runs (Markdown, CSV, LaTeX)."),
    "posthoc": ("dyn.analyze.posthoc_cli:posthoc_cmd", "Add post-hoc EMA networks of any decay, synthesized from a run's snapshots."),
}
