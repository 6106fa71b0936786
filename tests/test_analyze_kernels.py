"""The C kernels (analyze/_bits.c) and their numpy fallback against plain boolean sums,
and against each other through every accumulator that uses them."""

import importlib.machinery
import os
import shutil
import subprocess
import sys
import sysconfig

import numpy as np
import pytest

from dyn.analyze import kernels
from dyn.analyze.measures.agreement import agreement
from dyn.analyze.bits import pack
from dyn.analyze.measures.flips import FlipsAccumulator
from dyn.analyze.measures.misclassification import MisclassificationAccumulator
from dyn.analyze.measures.stability import StabilityAccumulator

SIZES = [1, 7, 8, 9, 63, 64, 65, 127, 1000, 1001, 2053, 16 * 1024 + 3]  # 16k+3: more than one C tile


@pytest.fixture(params=["C", "numpy"])
def backend(request, monkeypatch):
    if request.param == "numpy":
        monkeypatch.setattr(kernels, "_lib", lambda: None)
    elif kernels.backend() != "C":
        pytest.skip("the C kernels are not built here")
    assert kernels.backend() == request.param
    return request.param


def packed_with_garbage_padding(rng, correct):
    """pack(correct) with the padding bits of the last byte set: they must never count."""
    p = pack(correct)
    n = correct.shape[-1]
    if n % 8:
        p[..., -1] |= np.uint8((1 << (8 - n % 8)) - 1)
    return p


def test_c_kernels_are_built_where_a_compiler_is():
    """CI installs with a compiler: a silently failed build would leave everything on numpy."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        pytest.skip(f"no C compiler ({cc}): numpy is expected")
    assert kernels.backend() == "C", "analyze/_bits.c was not built: pip install -e . rebuilds it"


def test_environment_forces_numpy():
    env = {**os.environ, "DYN_KERNELS": "numpy"}
    out = subprocess.run([sys.executable, "-c", "from analyze import kernels; print(kernels.backend())"],
                         env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "numpy"


@pytest.mark.parametrize("n", SIZES)
def test_row_counts_equal_boolean_sums(backend, n):
    rng = np.random.default_rng(n)
    ca, cb = rng.random((2, 21, n)) < 0.5
    a, b = packed_with_garbage_padding(rng, ca), packed_with_garbage_padding(rng, cb)
    rc = kernels.RowCounts(n)
    ones, differ = rc.ones(a), rc.differ(a, b)
    assert ones.tolist() == ca.sum(axis=1).tolist()
    assert differ.tolist() == (ca != cb).sum(axis=1).tolist()
    ones_s, differ_s = rc.successive(a[5:], a[4])  # row t XOR row t - 1, from row 5 on
    assert ones_s.tolist() == ca[5:].sum(axis=1).tolist()
    assert differ_s.tolist() == (ca[5:] != ca[4:-1]).sum(axis=1).tolist()
    # rows that are not adjacent in memory (every other row), and a Fortran-ordered copy
    assert rc.differ(a[:20:2], b[1::2]).tolist() == (ca[:20:2] != cb[1::2]).sum(axis=1).tolist()
    assert rc.ones(np.asfortranarray(a)).tolist() == ones.tolist()


def test_row_counts_hand_worked(backend):
    rows = np.array([[0b1010_0000], [0b1111_1111], [0b0000_0000]], np.uint8)  # n = 3: bits 0..2 count
    rc = kernels.RowCounts(3)
    assert rc.ones(rows).tolist() == [2, 3, 0]
    assert rc.differ(rows[1:], rows[:-1]).tolist() == [1, 3]
    assert rc.ones(rows[:0]).tolist() == []


@pytest.mark.parametrize("n", [1, 9, 64, 1001, 16 * 1024 + 3])
def test_tally_equals_boolean_sums_in_any_chunking(backend, n):
    rng = np.random.default_rng(n)
    ca, cb = rng.random((2, 77, n)) < 0.5
    a, b = packed_with_garbage_padding(rng, ca), packed_with_garbage_padding(rng, cb)
    plain, xor, successive = kernels.SampleCounts(n), kernels.SampleCounts(n), kernels.SampleCounts(n)
    i = 0
    while i < len(a):  # chunks of 0..40 rows: every group size of the adder tree, and none
        j = min(len(a), i + int(rng.integers(0, 41)))
        plain.add(a[i:j])
        xor.add(a[i:j], b[i:j])
        if i:
            successive.add_successive(a[i:j], a[i - 1])
        else:
            successive.add_successive(a[1:j], a[0])
        i = j
    assert plain.rows == xor.rows == 77 and successive.rows == 76
    assert plain.counts().tolist() == ca.sum(axis=0).tolist()
    assert xor.counts().tolist() == (ca != cb).sum(axis=0).tolist()
    assert successive.counts().tolist() == (ca[1:] != ca[:-1]).sum(axis=0).tolist()


def test_tally_counts_past_every_plane_it_started_with(backend):
    n = 70
    ones = pack(np.ones((1, n), bool))
    t = kernels.SampleCounts(n)
    for size in (1, 16, 100, 3, 300):  # counts up to 420: 9 bits, planes grow twice
        t.add(np.repeat(ones, size, axis=0))
    assert t.counts().tolist() == [420] * n
    assert kernels.SampleCounts(n).counts().tolist() == [0] * n


def test_tally_counts_past_sixteen_bits(backend):
    """Counts of 65,536 and more leave the C unpacking's 16 bits for numpy's."""
    n = 11
    rows = pack(np.ones((70_001, n), bool))
    rows[::7, 0] = 0  # samples 0..7 wrong in every 7th row: right in 60,000 of 70,001
    t = kernels.SampleCounts(n)
    t.add(rows[:65_535])
    assert t.counts().tolist() == [56_172] * 8 + [65_535] * 3  # 65,535 - 9,363 rows with a 0
    t.add(rows[65_535:])
    assert t.counts().tolist() == [60_000] * 8 + [70_001] * 3


def test_successive_splits_chunks_into_rows_and_the_row_before_them():
    rng = np.random.default_rng(1)
    rows = rng.integers(0, 256, (9, 5), dtype=np.uint8)
    s = kernels.PreviousRow()
    buf = np.empty_like(rows)  # one buffer reused for every chunk, as the file reader does
    heads, got = [], []
    for lo, hi in [(0, 4), (4, 4), (4, 5), (5, 9)]:
        buf[:hi - lo] = rows[lo:hi]
        head, part, before = s.split(buf[:hi - lo])
        heads.append(head.copy())
        got += [(part[t].copy(), (part[t - 1] if t else before[0]).copy()) for t in range(len(part))]
        buf[:] = 0  # the next read overwrites the buffer: the kept row must be a copy
    assert [len(h) for h in heads] == [1, 0, 0, 0] and np.array_equal(heads[0], rows[:1])
    assert np.array_equal(np.array([g[0] for g in got]), rows[1:])
    assert np.array_equal(np.array([g[1] for g in got]), rows[:-1])


@pytest.mark.parametrize("n", [13, 1000, 4099])
def test_accumulators_agree_between_c_and_numpy(monkeypatch, n):
    if kernels.backend() != "C":
        pytest.skip("the C kernels are not built here")
    rng = np.random.default_rng(n)
    rows = pack(rng.random((45, n)) < 0.7)
    other = pack(rng.random((45, n)) < 0.7)
    epochs = np.arange(3, 48)

    def run():
        st, fl = StabilityAccumulator(n, epochs, (5, 44)), FlipsAccumulator(n, epochs, (4, 47))
        mc = MisclassificationAccumulator(n, epochs)
        for lo in range(0, 45, 7):
            for acc in (st, fl, mc):
                acc.add(rows[lo:lo + 7])
        s, f, m = st.result(), fl.result(), mc.result()
        g = agreement(rows, other, n, epochs, (10, 40))
        return s.correct, s.changed, f.flips, m.correct, g.correct_differs, g.mismatch

    c = run()
    monkeypatch.setattr(kernels, "_lib", lambda: None)
    for x, y in zip(c, run()):
        assert np.array_equal(x, y)


def test_gather_reads_the_bytes_at_the_offsets_and_stops_at_the_end(backend, tmp_path):
    data = np.random.default_rng(3).integers(0, 256, 10_000, dtype=np.uint8)
    path = tmp_path / "f.bin"
    path.write_bytes(data.tobytes())
    offsets = np.array([9_999, 0, 4_096, 4_096, 17, 8_191])
    fd = os.open(path, os.O_RDONLY)
    try:
        assert kernels.gather(fd, offsets) == data[offsets].tobytes()
        assert kernels.gather(fd, np.array([3, 10_000, 5])) == data[[3]].tobytes()  # stops at the end
        assert kernels.gather(fd, np.zeros(0, np.int64)) == b""
    finally:
        os.close(fd)


def test_a_library_of_another_version_is_refused(tmp_path, monkeypatch, capsys):
    """ctypes cannot check arguments: an old build left in place must not be called."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        pytest.skip(f"no C compiler ({cc})")
    src = tmp_path / "old.c"
    src.write_text("int dyn_bits_version(void) { return 0; }\n")
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(tmp_path / f"_bits{suffix}"), str(src)], check=True)
    monkeypatch.setattr(kernels, "__file__", str(tmp_path / "kernels.py"))
    kernels._lib.cache_clear()
    try:
        assert kernels._lib() is None
    finally:
        kernels._lib.cache_clear()
    assert "built from another dyn (kernels version 0, not 1); counting with numpy" in capsys.readouterr().err
