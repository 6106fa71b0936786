"""Analyses of recorded training dynamics, from Python and from `dyn analyze`.

The functions, for notebooks (each over one run or several, returning a tidy pandas
DataFrame; docs/python-api.md):

    stability, misclassification, flips, weight_difference, accuracy, agreement,
    forgetting, datamap, aum (per-sample training dynamics)

and one plotting function per figure over their DataFrames, taking fig= or ax= and returning
the figure: plot_stability, plot_misclassification, plot_flips, plot_weight_difference,
plot_accuracy, plot_agreement, plot_forgetting, plot_datamap, plot_aum.

The analyses themselves are pure numpy in dyn.analyze.measures; dyn.analyze.plot draws, and is
the only place matplotlib is imported, when a figure is drawn. Nothing is imported here: the
names above load on first use (module __getattr__), so `import dyn.analyze` stays light.
"""

_API = ("stability", "misclassification", "flips", "weight_difference", "accuracy", "agreement",
        "forgetting", "datamap", "aum", "settling")
_FIGURES = ("plot_stability", "plot_misclassification", "plot_flips", "plot_weight_difference",
            "plot_accuracy", "plot_agreement", "plot_forgetting", "plot_datamap", "plot_aum", "plot_settling")

__all__ = [*_API, *_FIGURES]


def __getattr__(name):
    import importlib

    if name in _API:
        return getattr(importlib.import_module("dyn.analyze.api"), name)
    if name in _FIGURES:
        return getattr(importlib.import_module("dyn.analyze.figures"), name)
    raise AttributeError(f"module 'dyn.analyze' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
