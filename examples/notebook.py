# %% [markdown]
# # Training dynamics of a run, from Python
#
# A notebook in the percent format: Jupyter (with jupytext), VS Code and PyCharm open the
# `# %%` cells as a notebook; `python examples/notebook.py` runs it as a script.
#
# Every analysis of `dyn analyze` is a function of `dyn.analyze` that returns a tidy
# pandas DataFrame, and every figure a function that draws it on a figure you give
# (docs/python-api.md). Set `RUN` to your own run file (`dyn train ... --out runs/x.h5`);
# without one, a synthetic run is written so that the notebook runs anywhere.

# %%
import os

from matplotlib.figure import Figure

import dyn
import dyn.analyze as da

RUN = os.environ.get("DYN_NOTEBOOK_RUN", "notebook-run.h5")
if not os.path.exists(RUN):
    from dyn.synthetic import Synthetic

    Synthetic(epochs=40, samples=2000, decays=(0.9, 0.9995), weights_every=2, images=True).write(
        RUN, config={"schedule": "constant", "seed": 0})

with dyn.open_run(RUN) as run:
    print(run.networks, run.splits)

# %% [markdown]
# ## The analyses: one DataFrame each

# %%
stab = da.stability(RUN)                     # one row per network and epoch
stab.groupby("network")[["stability", "accuracy"]].mean()

# %%
hist = da.misclassification(RUN)            # histogram bins; window: the second half
flip = da.flips(RUN, top=8)                  # the 8 least stable samples, per network
wd = da.weight_difference(RUN)               # ||EMA - SGD|| / ||SGD|| per EMA network and epoch
acc = da.accuracy(RUN, lr=True)              # mean and band over seeds (one run: no band)
agree = da.agreement(RUN, networks="sgd,ema-0.9995")
flip.head()

# %% [markdown]
# ## Two of the paper's figures side by side, on one matplotlib figure

# %%
fig = Figure(figsize=(9, 3.4), layout="constrained")
left, right = fig.subfigures(1, 2)
da.plot_stability(stab, fig=left)            # Figure 2: stability over accuracy
da.plot_weight_difference(wd, fig=right)     # Figure 5
fig.savefig(os.environ.get("DYN_NOTEBOOK_OUT", "notebook.png"), dpi=150)
fig
