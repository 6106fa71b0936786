"""Test accuracy and prediction stability against the EMA decay, recorded and post-hoc.

The figure the paper would have drawn instead of Table 1's five columns: one point per decay
a run trained, and a curve through the decays synthesized after training (`dyn posthoc`).
"""

from __future__ import annotations

import numpy as np


def decay_table(networks, decays, kinds, correct, residual=None, at: int = -1):
    """One row per network: network, kind, decay, accuracy (at row `at` of `correct`), mean
    stability over the rows (the fraction of samples whose correctness is unchanged from one
    recorded epoch to the next), and the profile residual (NaN for recorded networks).

    correct: per network a bool (E, N) array over the same E epochs. A tidy DataFrame, sorted
    by decay."""
    import pandas as pd

    rows = []
    for k, (net, d, kind, c) in enumerate(zip(networks, decays, kinds, correct)):
        c = np.asarray(c, dtype=bool)
        stab = (c[1:] == c[:-1]).mean(axis=1) if len(c) > 1 else np.full(0, np.nan)
        rows.append({"network": net, "kind": kind, "decay": float(d), "accuracy": float(c[at].mean()),
                     "stability": float(stab.mean()) if len(stab) else np.nan,
                     "residual": np.nan if residual is None else float(residual[k])})
    df = pd.DataFrame(rows, columns=["network", "kind", "decay", "accuracy", "stability", "residual"])
    return df.sort_values(["decay", "kind"], kind="stable").reset_index(drop=True)
