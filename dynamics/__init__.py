"""dyn's shared core (the repository's dynamics/ folder): the run file (format v1, writer and
reader), the importers and the `dyn` command line; the stages are dyn.train and dyn.analyze.

Needs no torch. `import dyn` is cheap: the HDF5 parts load on first use.

    >>> import dyn
    >>> with dyn.open_run("runs/x.h5") as run:
    ...     bits = run.correct("val", "sgd")        # bool (epochs, samples)
    ...     df = run.metrics()                      # one row per epoch
"""

__version__ = "0.1.0"

_LAZY = {
    "open_run": "reader", "Run": "reader",
    "RunWriter": "writer", "Eval": "writer",
    "Layout": "layout", "Network": "layout", "Split": "layout", "Param": "layout",
    "DynError": "errors", "RunFileError": "errors",
    "ema_name": "format", "FORMAT_VERSION": "format",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
