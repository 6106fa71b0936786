"""Post-hoc EMA: the EMA of a decay that was never trained, from the snapshots a run stored.

Every stored snapshot is a known weighted average of the SGD iterates w_0..w_T (its *profile*):
after t optimizer steps the EMA of decay a is

    a^t * w_0 + sum_{s=1..t} (1 - a) * a^(t - s) * w_s

and the SGD snapshot is w_t itself (the same formula with a = 0). A target (another decay at
step t, timm's warm-up EMA, or EDM2's power-function EMA) is approximated by coefficients x over
the stored snapshots up to t:

    min_x || sum_j x_j p_j - q ||^2   subject to   sum_j x_j = 1

Only profiles enter the solve (Gram matrix A = <p_i, p_j>, cross products b = <p_j, q>); the
weights are touched once, by `combine`. Inner products of two geometric profiles are sums of
geometric series (closed form, `gram`), so no loop over steps is needed; for a target profile
that is not geometric (warm-up, power function) <p_j, q> is the EMA of the sequence q itself,
evaluated at t_j: one linear filter over the steps per stored decay.

numpy and scipy only (the analysis stage never imports torch). See docs/posthoc.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The safeguard against huge, cancelling coefficients: a truncated eigen-solve. Directions of
# the (constraint-reduced) Gram matrix whose eigenvalue is below RCOND x the largest are
# dropped, and the solution is the one of least norm in what remains. Stored EMA profiles at
# neighbouring epochs are nearly parallel, so an exact solve builds targets from differences
# of huge coefficients (1e6 and more) whose rounding in float32 weights is noise. A ridge would
# do the same job but biases every direction (a ridge of 1e-2 of the scale gave 48% weight
# error on digits, 1e-4 gave 4%); truncation leaves the well-determined directions exact.
# On the digits ground truth (docs/posthoc.md) 1e-13, 1e-10, 1e-8 and 1e-6 gave the same
# weight errors; L1 norms stayed below 5 for decays between the stored ones, and exceeded 20
# only for targets whose residual was near or above MAX_RESIDUAL.
RCOND = 1e-10
# A synthesized network whose profile residual (||achieved - target|| / ||target||) exceeds
# this is refused. On digits the weight error stayed 4x or more below the residual
# (docs/posthoc.md), so 0.05 keeps it near 1% of the EMA-SGD distance.
MAX_RESIDUAL = 0.05
# Snapshots of at most this many recorded epochs before the target's (plus the initial
# weights) enter a solve: the longest stored EMA at the oldest of them carries the earlier
# history, and the solve stays small (6 networks x 33 epochs: ~200 profiles, ~5 ms).
WINDOW_EPOCHS = 32


@dataclass(frozen=True)
class Target:
    """What to synthesize: `kind` "ema" (decay), "ema-warmup" (timm's warm-up EMA: decay
    min(decay, (1 + n) / (10 + n)) at its n-th update) or "power" (EDM2's power-function EMA
    of relative width sigma_rel)."""

    kind: str
    value: float

    @property
    def name(self) -> str:
        """The network's name in the run file: posthoc-0.995, posthoc-warmup-0.995, posthoc-sigma-0.05."""
        prefix = {"ema": "posthoc", "ema-warmup": "posthoc-warmup", "power": "posthoc-sigma"}[self.kind]
        return f"{prefix}-{float(self.value)!r}"

    @property
    def decay(self) -> float | None:
        return None if self.kind == "power" else float(self.value)

    def describe(self) -> dict:
        key = "sigma_rel" if self.kind == "power" else "decay"
        return {"kind": self.kind, key: float(self.value)}


def parse_target(text: str) -> Target:
    """0.995 (plain EMA), warmup:0.995 (timm's warm-up EMA), sigma:0.05 (EDM2 power EMA)."""
    kind, _, value = text.rpartition(":")
    kinds = {"": "ema", "warmup": "ema-warmup", "sigma": "power"}
    if kind not in kinds:
        raise ValueError(f"{text!r}: expected D, warmup:D or sigma:S")
    try:
        v = float(value)
    except ValueError:
        raise ValueError(f"{text!r}: {value!r} is not a number") from None
    if kinds[kind] == "power":
        if not 0 < v < 0.2887:  # sigma_rel of gamma = 0 is 1/sqrt(12)
            raise ValueError(f"{text!r}: sigma_rel must lie in (0, 0.2887)")
    elif not 0 <= v < 1:
        raise ValueError(f"{text!r}: a decay must lie in [0, 1)")
    return Target(kinds[kind], v)


def sigma_rel_to_gamma(sigma_rel: float) -> float:
    """EDM2's exponent gamma of the power-function profile p(s) ~ s^gamma whose relative
    standard deviation is sigma_rel: the largest real root of g^3 + 7g^2 + (16 - 1/s^2)g + 12 - 1/s^2."""
    t = sigma_rel ** -2
    roots = np.roots([1.0, 7.0, 16.0 - t, 12.0 - t])
    return float(roots.real[np.abs(roots.imag) < 1e-9].max())


# --------------------------------------------------------------------------- profiles
def gram(a1, t1, a2, t2) -> np.ndarray:
    """<p(a1, t1), p(a2, t2)>: inner products of plain EMA profiles (a = 0: an SGD snapshot),
    in closed form, broadcasting over the arguments."""
    a1, t1, a2, t2 = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (a1, t1, a2, t2)))
    swap = t1 > t2  # make (a, t) the earlier snapshot
    a, t, b, u = np.where(swap, a2, a1), np.where(swap, t2, t1), np.where(swap, a1, a2), np.where(swap, t1, t2)
    r = a * b
    one_minus_r = (1 - a) + (1 - b) - (1 - a) * (1 - b)  # 1 - ab without cancellation near 1
    with np.errstate(divide="ignore", invalid="ignore"):
        series = np.where(one_minus_r > 0, -np.expm1(t * np.log(np.where(r > 0, r, 1.0))) / one_minus_r, t)
        series = np.where(r > 0, series, np.minimum(t, 1.0))  # r = 0: only the k = 0 term
    return np.power(a, t) * np.power(b, u) + (1 - a) * (1 - b) * np.power(b, u - t) * series


def target_profile(target: Target, t: int) -> np.ndarray:
    """The target's weights over the iterates w_0..w_t (sums to 1)."""
    t = int(t)
    s = np.arange(t + 1, dtype=np.float64)
    if target.kind == "ema":
        d = target.value
        p = (1 - d) * np.power(d, t - s)
        p[0] = d ** t
        return p
    if target.kind == "ema-warmup":
        # the n-th update (n = 0, 1, ...) makes iterate s = n + 1 with decay min(d, s / (9 + s))
        d = np.minimum(target.value, s[1:] / (9 + s[1:]))
        logd = np.concatenate([[0.0], np.cumsum(np.log(d))])  # log prod_{r <= s} d_r
        p = np.empty(t + 1)
        p[0] = np.exp(logd[t])
        p[1:] = (1 - d) * np.exp(logd[t] - logd[1:])
        return p
    if target.kind == "power":
        # beta_s = (1 - 1/s)^(gamma + 1); the products telescope: p(s) = (s^(g+1) - (s-1)^(g+1)) / t^(g+1)
        if t == 0:
            return np.ones(1)
        g1 = sigma_rel_to_gamma(target.value) + 1
        p = np.zeros(t + 1)
        p[1:] = (np.power(s[1:] / t, g1) - np.power((s[1:] - 1) / t, g1))
        return p
    raise ValueError(f"unknown target kind {target.kind!r}")


def _cross(target: Target, t: int, decays: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, float]:
    """(<p_j, q> for every snapshot j, ||q||^2) of the target at step t."""
    if target.kind == "ema":
        return gram(decays, times, target.value, t), float(gram(target.value, t, target.value, t))
    from scipy.signal import lfilter

    q = target_profile(target, t)
    b = np.empty(len(decays))
    for a in np.unique(decays):
        mine = decays == a
        # y(0) = q(0), y(s) = a y(s-1) + (1 - a) q(s): y(t_j) = <p(a, t_j), q>
        y = np.empty(t + 1)
        y[0] = q[0]
        if t:
            y[1:] = lfilter([1 - a], [1, -a], q[1:], zi=[a * q[0]])[0]
        b[mine] = y[times[mine].astype(np.int64)]
    return b, float(q @ q)


# ------------------------------------------------------------------------------ solve
def _complement(n: int) -> np.ndarray:
    """An orthonormal basis (n, n - 1) of the vectors summing to 0 (a Householder reflection)."""
    v = np.full(n, 1 / np.sqrt(n))
    v[0] -= 1
    nv = v @ v
    h = np.eye(n) - (2 / nv) * np.outer(v, v) if nv > 0 else np.eye(n)
    return h[:, 1:]


def solve(A: np.ndarray, B: np.ndarray, qq: np.ndarray, rcond: float = RCOND):
    """Coefficients x (K, J), one row per target, minimising ||P^T x - q|| with sum x = 1.

    A: (J, J) Gram matrix of the stored profiles; B: (J, K) their inner products with the K
    targets; qq: (K,) the targets' squared norms. Returns (x, relative residual (K,)).
    """
    J = A.shape[0]
    x0 = np.full(J, 1 / J)
    if J == 1:
        x = np.ones((B.shape[1], 1))
    else:
        Z = _complement(J)
        M = Z.T @ A @ Z
        w, V = np.linalg.eigh((M + M.T) / 2)
        keep = w > rcond * max(w.max(), 0)
        g = Z.T @ (B - (A @ x0)[:, None])
        Vk = V[:, keep]
        z = Vk @ ((Vk.T @ g) / w[keep][:, None])
        x = (x0[:, None] + Z @ z).T
    r2 = np.einsum("kj,ji,ki->k", x, A, x) - 2 * np.einsum("kj,jk->k", x, B) + qq
    return x, np.sqrt(np.maximum(r2, 0) / qq)


def _window(before: np.ndarray, window: int) -> np.ndarray:
    """The recorded epochs (up to the target's) whose snapshots enter a solve: the last
    `window + 1`, then older ones ever more sparsely (offsets growing by 1.25x), and the first."""
    if window is None or len(before) <= window + 1:
        return before
    back = len(before) - 1 - np.arange(len(before))  # offset of each epoch from the target's
    grid = set(range(window + 1))
    o = float(window)
    while o < len(before):
        o *= 1.25
        grid.add(int(round(o)))
    keep = np.isin(back, list(grid))
    keep[0] = True
    return before[keep]


def coefficients(decays, times, epochs, targets: list[Target], target_epochs, *, rcond: float = RCOND,
                 window: int = WINDOW_EPOCHS):
    """Plan every synthesis: for each target and each epoch of `target_epochs`, coefficients over
    the stored snapshots.

    decays, times, epochs: (J,) per stored snapshot: its EMA decay (0 for SGD), the optimizer
    steps taken when it was recorded, its epoch. Returns (table, X): a tidy DataFrame (one row
    per target and epoch: network, kind, decay, sigma_rel, epoch, iteration, snapshots,
    residual, l1, refused) and X (rows of the table, J) with the coefficients (0 for snapshots
    not used).
    """
    import pandas as pd

    decays = np.asarray(decays, dtype=np.float64)
    times = np.asarray(times, dtype=np.int64)
    epochs = np.asarray(epochs, dtype=np.int64)
    rows, X = [], []
    recorded = np.unique(epochs)
    for e in target_epochs:
        mine = epochs <= e
        if not mine.any():
            raise ValueError(f"no snapshot recorded at or before epoch {e}")
        t = int(times[mine].max())
        use = np.flatnonzero(mine & np.isin(epochs, _window(recorded[recorded <= e], window)))
        # identical profiles (every network at step 0, the same decay twice) enter once
        key = np.stack([np.where(times[use] > 0, decays[use], 0.0), times[use]], axis=1)
        _, first = np.unique(key, axis=0, return_index=True)
        use = use[np.sort(first)]
        a, ts = decays[use], times[use]
        A = gram(a[:, None], ts[:, None], a[None, :], ts[None, :])
        cross = [_cross(tg, t, a, ts) for tg in targets]
        B = np.stack([c[0] for c in cross], axis=1)
        qq = np.array([c[1] for c in cross])
        x, residual = solve(A, B, qq, rcond)
        for k, tg in enumerate(targets):
            full = np.zeros(len(decays))
            full[use] = x[k]
            X.append(full)
            rows.append({"network": tg.name, "kind": tg.kind, "decay": tg.decay,
                         "sigma_rel": tg.value if tg.kind == "power" else None, "epoch": int(e),
                         "iteration": t, "snapshots": len(use), "residual": float(residual[k]),
                         "l1": float(np.abs(x[k]).sum()), "refused": bool(residual[k] > MAX_RESIDUAL)})
    table = pd.DataFrame(rows, columns=["network", "kind", "decay", "sigma_rel", "epoch", "iteration",
                                        "snapshots", "residual", "l1", "refused"])
    return table, np.array(X).reshape(len(rows), len(decays))


def combine(x: np.ndarray, snapshots) -> np.ndarray:
    """sum_j x_j * snapshot_j in float64, reading only snapshots with a non-zero coefficient.
    `snapshots(j)` returns snapshot j's flat weights."""
    out = None
    for j in np.flatnonzero(x):
        w = np.asarray(snapshots(int(j)), dtype=np.float64)
        out = x[j] * w if out is None else out + x[j] * w  # noqa: PLR6104 (fresh array first)
    return out
