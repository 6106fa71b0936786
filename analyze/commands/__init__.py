"""The `dyn analyze` commands, one module each: thin layers between flags and the analyses.

Each module has the same five functions, so that `dyn analyze report` can run them all:
compute(runs, opts, **params) -> result (numbers only; runs are open during it),
records(result) -> (CSV columns, rows), document(result) -> JSON-able dict,
table(result) -> the short text table, draw(result, out) -> [figure paths];
and the click command, which calls analyze.options.execute.
"""
