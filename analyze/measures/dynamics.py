"""Per-sample training dynamics: forgetting events (Toneva et al., ICLR 2019), data maps
(Swayamdipta et al., EMNLP 2020) and the area under the margin (Pleiss et al., NeurIPS 2020).

Each is computed from one network's records over epochs, fed in epoch order in chunks of
epochs (memory O(N), not O(E N): an ImageNet-sized train-presented split does not fit whole).
An example not presented in an epoch (train-presented: NaN prob/margin) is no presentation: it
neither ends a learned streak nor counts in a mean.

Definitions, as the reference code computes them (docs/analyze.md, reference/training-dynamics.md):
- forgetting event: correct at one presentation, wrong at the next. Never learned (never
  correct): counted as E, the number of epochs, per run (order_examples_by_forgetting.py);
  `never_learned="inf"` as the paper's "infinitely forgotten", "skip" leaves them out.
- data map: confidence = mean true-class probability, variability = its *population* standard
  deviation (np.std, ddof 0, as cartography's compute_train_dy_metrics), correctness = fraction
  of presentations correct (cartography stores the count; both are given).
- AUM: mean over presentations of margin = true-class logit - largest other logit.
"""

from __future__ import annotations

import functools

import numpy as np

from dyn.analyze import half

NEVER_LEARNED = ("E", "inf", "skip")


def _rows(x, n: int, what: str, dtype=None) -> np.ndarray:
    x = np.asarray(x, dtype=dtype)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] != n:
        raise ValueError(f"{what}: expected (epochs, {n}) rows, got shape {x.shape}")
    return x


class ForgettingAccumulator:
    """Forgetting events, first-learned row and presentations per example, streamed by epoch.

    The state is kept 64 examples a word (analyze/_half.c describes it): `last` and `ever` bits,
    the event and presentation counts bit-sliced (one plane per bit of the largest count), the
    row of the first correct presentation per example. Advanced in C where built, else by numpy
    on the same words (_numpy_rows)."""

    def __init__(self, n: int, epochs):
        self.n, self.epochs = int(n), np.asarray(epochs, dtype=np.int64)
        words = -(-self.n // 64)
        self.last = np.zeros(words, np.uint64)  # correct at the latest presentation (0 before any)
        self.ever = np.zeros(words, np.uint64)  # correct at some presentation so far
        self.event_planes = np.zeros((words, 0), np.uint64)
        self.shown_planes = np.zeros((words, 0), np.uint64)
        self.first = np.full(self.n, -1, np.int32)  # row of the first correct presentation; -1: none yet
        self.row = 0

    def add(self, correct, presented=None) -> None:
        """correct, presented: (t, N) bool rows (presented None: all presented)."""
        correct = _rows(correct, self.n, "correctness", bool)
        if presented is not None:
            presented = np.packbits(_rows(presented, self.n, "presented", bool), axis=1)
        self._feed(np.packbits(correct, axis=1), None, presented)

    def add_packed(self, packed, presence=None) -> None:
        """As add, from packed correctness rows (t, ceil(N/8)) as stored and float16 presence
        rows (NaN: not presented; None: all presented)."""
        packed = _rows(packed, (self.n + 7) // 8, "packed correctness", np.uint8)
        shown = None
        if presence is not None:
            presence = np.asarray(presence)
            if presence.dtype != np.float16:
                shown, presence = np.packbits(~np.isnan(_rows(presence, self.n, "presence")), axis=1), None
        self._feed(packed, presence, shown)

    def _feed(self, packed, presence, shown) -> None:
        k = (self.row + len(packed)).bit_length()  # planes for the largest count: one more per doubling
        if k > self.event_planes.shape[1]:
            self.event_planes, self.shown_planes = (
                np.concatenate([p, np.zeros((len(p), k - p.shape[1]), np.uint64)], axis=1)
                for p in (self.event_planes, self.shown_planes))
        if not half.forgetting_words(packed, presence, shown, self.n, self.row, self.last, self.ever,
                                     self.event_planes, self.shown_planes, self.first):
            self._numpy_rows(packed, presence, shown)
        self.row += len(packed)

    def _numpy_rows(self, packed, presence, shown) -> None:
        all_shown = _words(np.packbits(np.ones((1, self.n), bool), axis=1), len(self.last))[0]
        correct = _words(packed, len(self.last))
        if presence is not None:
            presence = np.asarray(presence)
            if len(presence) != len(packed):
                raise ValueError(f"{len(presence)} rows of presence, {len(packed)} of correctness")
            shown = np.packbits((presence.view(np.uint16) & 0x7FFF) <= 0x7C00, axis=1)
        if shown is not None:
            shown = _words(shown, len(self.last)) & all_shown
        for t in range(len(correct)):
            p = all_shown if shown is None else shown[t]
            c = correct[t] & p
            forgot, learned = self.last & p & ~c, c & ~self.ever
            self.last[:] = (self.last & ~p) | c  # not presented: kept
            self.ever |= c
            if learned.any():
                self.first[_examples(learned, self.n)] = self.row + t
            for planes, carry in ((self.event_planes, forgot), (self.shown_planes, p)):
                for j in range(planes.shape[1]):
                    planes[:, j], carry = planes[:, j] ^ carry, planes[:, j] & carry

    @property
    def events(self) -> np.ndarray:
        return _counts(self.event_planes, self.n)

    @property
    def presentations(self) -> np.ndarray:
        return _counts(self.shown_planes, self.n)

    def frame(self, never_learned: str = "E"):
        return self.result(never_learned).frame()

    def result(self, never_learned: str = "E") -> "Columns":
        """frame()'s columns, without pandas."""
        if never_learned not in NEVER_LEARNED:
            raise ValueError(f"never_learned must be one of {', '.join(NEVER_LEARNED)}; got {never_learned!r}")
        if self.row != len(self.epochs):
            raise ValueError(f"fed {self.row} rows for {len(self.epochs)} epochs")
        never = self.first < 0
        first = np.append(self.epochs.astype(float), np.nan)[self.first]  # row -1 (never): NaN
        events = self.events
        counted = events.astype(float)
        counted[never] = {"E": float(len(self.epochs)), "inf": np.inf, "skip": np.nan}[never_learned]
        return Columns({"sample": _samples(self.n), "presentations": self.presentations,
                        "forgetting_events": events, "first_learned": first, "never_learned": never,
                        "forgetting": counted})


_REVERSED = np.packbits(np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1), axis=1,
                        bitorder="little")[:, 0]  # each byte's bits in the other order


def _words(packed, words: int) -> np.ndarray:
    """Packed rows (t, ceil(N/8)), bit order big as stored -> (t, words) uint64, bit i of word w
    being example 64 w + i (analyze/_half.c's layout)."""
    packed = np.asarray(packed, np.uint8)
    out = np.zeros((len(packed), 8 * words), np.uint8)
    out[:, :packed.shape[1]] = _REVERSED[packed]
    return out.view("<u8").astype(np.uint64)


def _bits(words: np.ndarray, n: int) -> np.ndarray:
    """uint64 words -> the n examples' bits, uint8 0/1."""
    return np.unpackbits(words.astype("<u8").view(np.uint8), bitorder="little", count=n)


def _examples(words: np.ndarray, n: int) -> np.ndarray:
    return np.flatnonzero(_bits(words, n))


def _frame(columns: dict):
    """A DataFrame of these arrays as they are: pandas' default copies them into one block per
    dtype, ~0.1 s for a million rows on a loaded machine (the frame owns them from here)."""
    import pandas as pd

    return pd.DataFrame(columns, copy=False)


class Columns:
    """Per-example arrays of one length, by name: what frame() puts in a DataFrame, for code that
    only reads columns and picks rows (a command's printed table) and so need not import pandas
    (~0.3 s of a ~1 s command at ImageNet size). c["name"] is the array; c.iloc[rows] picks rows."""

    def __init__(self, columns: dict):
        self.columns = columns

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    @property
    def iloc(self):
        return _Pick(self)

    def frame(self):
        return _frame(dict(self.columns))


class _Pick:
    def __init__(self, cols: Columns):
        self.cols = cols

    def __getitem__(self, rows) -> Columns:
        return Columns({k: v[rows] for k, v in self.cols.columns.items()})


@functools.lru_cache(maxsize=4)
def _samples(n: int, start: int = 0) -> np.ndarray:
    """start..start+n-1, one read-only array for every network's frame."""
    x = np.arange(start, start + n)
    x.flags.writeable = False
    return x


def _counts(planes: np.ndarray, n: int) -> np.ndarray:
    """Bit-sliced counts (words, k) -> int32 (n,)."""
    out = half.planes_counts(planes, n)
    if out is not None:
        return out
    out = np.zeros(n, np.int32)
    for j in range(planes.shape[1]):
        out += _bits(np.ascontiguousarray(planes[:, j]), n).astype(np.int32) << j
    return out


def forgetting(correct, presented=None, epochs=None, never_learned: str = "E"):
    """Forgetting statistics of (E, N) correctness (bool), one row per example.

    presented: (E, N) bool, False where the example was not presented in that epoch.
    Columns: sample, presentations, forgetting_events (1 -> 0 transitions between consecutive
    presentations), first_learned (epoch of the first correct presentation; NaN: never),
    never_learned, forgetting (the count ranked on: forgetting_events, or for never-learned
    examples E (the reference code), inf, or NaN with never_learned="skip")."""
    correct = np.asarray(correct, dtype=bool)
    correct = correct[None] if correct.ndim == 1 else correct
    acc = ForgettingAccumulator(correct.shape[1], np.arange(len(correct)) if epochs is None else epochs)
    acc.add(correct, presented)
    return acc.frame(never_learned)


def order_by_forgetting(counts, index=None):
    """The reference's output (order_examples_by_forgetting.py): examples sorted by their
    forgetting count summed over runs, ascending; ties by index (the reference's sort is not
    stable, so any tie order matches it). counts: (runs, N) or (N,); NaN (skipped) examples left out.
    Returns a DataFrame: rank (1 = least forgotten), index, forgetting_counts; `attrs["unforgettable"]`."""
    counts = np.atleast_2d(np.asarray(counts, dtype=float))
    total = counts[0] if len(counts) == 1 else counts.sum(axis=0)
    in_order = index is None
    index = _samples(total.size) if index is None else np.asarray(index)
    keep = ~np.isnan(total)
    if not keep.all():
        total, index = total[keep], index[keep]
    if in_order or np.all(index[:-1] <= index[1:]):  # ties already in index order: one stable sort
        order = half.stable_order(total)
    else:
        order = np.lexsort((index, total))
    df = _frame({"rank": _samples(order.size, 1), "index": index[order], "forgetting_counts": total[order]})
    df.attrs["unforgettable"] = int(np.sum(total == 0))
    return df


class _Finished:
    """frame() finishes the sums in place and hands the accumulator's own arrays to the frame:
    a copy of each would be ~10 MB of fresh pages per million examples. Rows added after it are
    refused; frame() again gives the same columns."""

    columns = None  # the finished columns, once frame() was called

    def _open(self) -> None:
        if self.columns is not None:
            raise ValueError("rows added after frame(): the sums are finished")

    def _columns(self) -> dict:
        if self.columns is None:
            self.columns = self._finish()
        return self.columns

    def frame(self):
        return self.result().frame()

    def result(self) -> Columns:
        """frame()'s columns, without pandas."""
        return Columns(dict(self._columns()))


class DataMapAccumulator(_Finished):
    """Confidence, variability and correctness per example, streamed by epoch."""

    def __init__(self, n: int):
        self.n = int(n)
        self.sum = np.zeros(self.n)
        self.sq = np.zeros(self.n)
        self.count = np.zeros(self.n, np.int32)
        self.correct = np.zeros(self.n, np.int32)

    def add(self, prob, correct=None, packed=None) -> None:
        """prob: (t, N) floats (float16 as stored is fastest), NaN where not presented;
        correct: (t, N) bool, or packed: (t, ceil(N/8)) uint8 rows as the run file stores them."""
        self._open()
        prob = _rows(prob, self.n, "probabilities")
        if packed is None:
            correct = _rows(correct, self.n, "correctness", bool)
            packed = np.packbits(correct, axis=1)
        if len(prob) != len(packed):
            raise ValueError(f"{len(prob)} rows of probabilities, {len(packed)} of correctness")
        half.accumulate(prob, self.sum, self.count, squares=self.sq, packed=packed, correct=self.correct)

    def _finish(self) -> dict:
        with np.errstate(invalid="ignore", divide="ignore"):
            k = self.count.astype(float)
            k[self.count == 0] = np.nan
            mean = np.divide(self.sum, k, out=self.sum)
            sd = np.divide(self.sq, k, out=self.sq)
            with half.scratch(mean.shape, mean.dtype) as square:
                sd -= np.multiply(mean, mean, out=square)
            np.sqrt(np.maximum(sd, 0.0, out=sd), out=sd)  # population variance (ddof 0)
        return {"sample": _samples(self.n), "confidence": mean, "variability": sd,
                "correctness": np.divide(self.correct, k, out=k), "correct_epochs": self.correct,
                "presentations": self.count}


def data_map(prob, correct):
    """Data-map coordinates of (E, N) true-class probabilities and correctness, one row per
    example: sample, confidence (mean probability), variability (population std, ddof 0, as
    cartography), correctness (fraction of presentations correct), correct_epochs (cartography's
    count), presentations. NaN probabilities (not presented) are left out of all three."""
    prob = np.asarray(prob, dtype=np.float32)
    prob = prob[None] if prob.ndim == 1 else prob
    acc = DataMapAccumulator(prob.shape[1])
    acc.add(prob, correct)
    return acc.frame()


REGIONS = {  # cartography chooses subsets by sorting, not thresholds: (column, highest first)
    "easy-to-learn": ("confidence", True),
    "ambiguous": ("variability", True),
    "hard-to-learn": ("confidence", False),
}


def region_top(df, region: str, k: int):
    """The k examples of a data-map region: the highest confidence (easy-to-learn), the highest
    variability (ambiguous) or the lowest confidence (hard-to-learn); ties by sample."""
    column, highest = REGIONS[region]
    value = np.asarray(df[column], dtype=float)  # a DataFrame's or Columns' column
    return df.iloc[smallest(-value if highest else value, np.asarray(df["sample"]), k)]


def smallest(key, tie, k: int) -> np.ndarray:
    """Positions of the k smallest finite keys, ordered by key then `tie`, without sorting all
    N (an ImageNet-sized split has 1.3 million): a partition, then a sort of the candidates."""
    key = np.asarray(key)
    k = min(int(k), int(np.count_nonzero(np.isfinite(key))))
    if k <= 0:
        return np.zeros(0, np.int64)
    with half.scratch(key.shape, key.dtype) as part:  # np.partition would copy into fresh pages
        np.copyto(part, key)
        part.partition(k - 1)  # NaN partitions last, as +inf would
        kth = part[k - 1]
    cand = np.flatnonzero(key <= kth)  # every candidate tied with the k-th too (never NaN)
    return cand[np.lexsort((tie[cand], key[cand]))][:k]


class AUMAccumulator(_Finished):
    """Sum and count of margins per example, streamed by epoch."""

    def __init__(self, n: int):
        self.n = int(n)
        self.sum = np.zeros(self.n)
        self.count = np.zeros(self.n, np.int32)

    def add(self, margin) -> None:
        """margin: (t, N) floats (float16 as stored is fastest), NaN where not measured."""
        self._open()
        half.accumulate(_rows(margin, self.n, "margins"), self.sum, self.count)

    def _finish(self) -> dict:
        none = self.count == 0
        aum = np.divide(self.sum, self.count, out=self.sum, where=~none)
        aum[none] = np.nan
        return {"sample": _samples(self.n), "aum": aum, "measurements": self.count}

    def frame(self, ranked: bool = False):
        """ranked: with the column rank, 1 = lowest AUM (ties by sample, NaN last); made here,
        as a column added to the frame afterwards is copied (~30 ms per million rows)."""
        return self.result(ranked).frame()

    def result(self, ranked: bool = False) -> Columns:
        """frame()'s columns, without pandas."""
        cols = self._columns()
        if ranked and "rank" not in cols:
            cols["rank"] = ranks(cols["aum"])
        return Columns({k: v for k, v in cols.items() if ranked or k != "rank"})


def ranks(values) -> np.ndarray:
    """1-based ranks, lowest first: ties by position (a stable sort), NaN last."""
    return half.stable_ranks(values)


def area_under_margin(margin):
    """AUM of (E, N) margins (true-class logit - largest other logit), one row per example:
    sample, aum (mean margin over the measurements), measurements (non-NaN epochs)."""
    margin = np.asarray(margin, dtype=np.float32)
    margin = margin[None] if margin.ndim == 1 else margin
    acc = AUMAccumulator(margin.shape[1])
    acc.add(margin)
    return acc.frame()


def margin_from_logits(logits, targets) -> np.ndarray:
    """(N, C) logits and (N,) targets -> (N,) margins: z_y - max over k != y of z_k."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(targets, dtype=np.int64)
    true = z[np.arange(len(z)), y]
    other = z.copy()
    other[np.arange(len(z)), y] = -np.inf
    return true - other.max(axis=1)


def prob_from_logits(logits, targets) -> np.ndarray:
    """(N, C) logits and (N,) targets -> (N,) softmax probability of the target class."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e[np.arange(len(z)), np.asarray(targets, dtype=np.int64)] / e.sum(axis=1)
