"""Packed-bit primitives against numpy's own unpacking and plain boolean sums."""

import numpy as np
import pytest

from dyn.analyze.bits import VerticalCounter, WordView, blocks, check_rows, pack, popcount, unpack, words
from dyn.format import packed_width

SIZES = [1, 7, 8, 9, 63, 64, 65, 127, 1000, 1001]


def random_correct(rng, t, n, p=0.6):
    return rng.random((t, n)) < p


def feed_in_random_chunks(rng, counter, rows):
    i = 0
    while i < len(rows):
        s = int(rng.integers(0, 6))  # 0 = an empty chunk, which must be harmless
        counter.add(rows[i:i + s])
        i += s


def test_layout_is_numpy_packbits_big_endian():
    # sample i is bit 7 - i % 8 of byte i // 8: samples 0 and 9 set -> 0x80, 0x40
    correct = np.zeros((1, 10), bool)
    correct[0, [0, 9]] = True
    assert pack(correct).tolist() == [[0x80, 0x40]]
    assert packed_width(10) == 2 and packed_width(8) == 1 and packed_width(0) == 0


@pytest.mark.parametrize("n", SIZES)
def test_unpack_inverts_packbits(n):
    rng = np.random.default_rng(n)
    c = random_correct(rng, 5, n)
    assert np.array_equal(unpack(np.packbits(c, axis=1), n), c)


def test_unpack_and_check_rows_refuse_wrong_shapes():
    with pytest.raises(ValueError, match="2 bytes for 9 samples"):
        unpack(np.zeros((3, 1), np.uint8), 9)
    with pytest.raises(ValueError, match="uint8"):
        check_rows(np.zeros((3, 2), np.int64), 9)
    with pytest.raises(ValueError):
        check_rows(np.zeros(2, np.uint8), 9)


@pytest.mark.parametrize("n", SIZES)
def test_popcount_matches_boolean_sum_on_bytes_and_words(n):
    rng = np.random.default_rng(100 + n)
    c = random_correct(rng, 13, n)
    p = np.packbits(c, axis=1)
    assert popcount(p, n).tolist() == c.sum(axis=1).tolist()
    assert popcount(words(p), n).tolist() == c.sum(axis=1).tolist()


def test_popcount_ignores_set_padding_bits():
    n = 13  # 3 padding bits in byte 1
    c = np.zeros((2, n), bool)
    c[1, 12] = True
    p = np.packbits(c, axis=1)
    p[:, 1] |= 0b111
    assert popcount(p, n).tolist() == [0, 1]
    assert popcount(words(p), n).tolist() == [0, 1]


def test_words_views_when_it_can_and_pads_when_it_must():
    p = np.packbits(np.ones((3, 128), bool), axis=1)   # 16 bytes a row
    assert np.shares_memory(words(p), p)
    q = np.packbits(np.ones((3, 100), bool), axis=1)   # 13 bytes -> 2 words, zero padded
    w = words(q)
    assert w.shape == (3, 2) and not np.shares_memory(w, q)
    assert np.array_equal(w.view(np.uint8)[:, :13], q) and not w.view(np.uint8)[:, 13:].any()
    wide = np.packbits(np.ones((3, 256), bool), axis=1)
    sliced = wide[:, :16]                               # not contiguous: copied
    assert np.array_equal(words(sliced).view(np.uint8), sliced)


def test_words_reuses_one_buffer_for_padded_rows():
    rng = np.random.default_rng(5)
    w = WordView()
    big = np.packbits(rng.random((6, 100)) < 0.5, axis=1)
    small = np.packbits(rng.random((2, 100)) < 0.5, axis=1)
    a = w(big)
    b = w(small)
    assert np.shares_memory(a, b) and b.shape == (2, 2)       # no new allocation
    assert np.array_equal(b.view(np.uint8)[:, :13], small) and not b.view(np.uint8)[:, 13:].any()
    assert popcount(b, 100).tolist() == popcount(small, 100).tolist()


def test_blocks_cover_every_row_once_within_the_byte_limit():
    rows = np.zeros((10, 3), np.uint8)
    parts = list(blocks(rows, max_bytes=7))  # 2 rows of 3 bytes per block
    assert [len(b) for b in parts] == [2, 2, 2, 2, 2]
    assert [len(b) for b in blocks(rows, max_bytes=1)] == [1] * 10  # never zero rows


def test_vertical_counter_hand_worked():
    # samples:   0  1  2
    rows = [[1, 1, 0],
            [1, 0, 0],
            [1, 1, 0]]
    vc = VerticalCounter(3)
    vc.add(np.packbits(np.array(rows, bool), axis=1))
    assert vc.counts().tolist() == [3, 2, 0] and vc.rows == 3


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("t", [0, 1, 2, 3, 4, 5, 16, 17, 100])
def test_vertical_counter_matches_naive_sum_for_any_chunking(n, t):
    rng = np.random.default_rng(1000 * n + t)
    c = random_correct(rng, t, n)
    vc = VerticalCounter(n)
    feed_in_random_chunks(rng, vc, np.packbits(c, axis=1).reshape(t, packed_width(n)))
    assert vc.counts().tolist() == c.sum(axis=0).tolist()
    assert vc.rows == t


@pytest.mark.parametrize("t", [255, 256, 257, 511, 512, 513])
def test_vertical_counter_exact_at_powers_of_two(t):
    # every sample right at every row -> the count must be exactly t,
    # which exercises every carry into a new plane
    n = 70
    c = np.ones((t, n), bool)
    c[:, 5] = False
    c[::2, 6] = False
    vc = VerticalCounter(n)
    vc.add(np.packbits(c, axis=1))
    got = vc.counts()
    assert got[0] == t and got[5] == 0 and got[6] == t // 2
    assert got.tolist() == c.sum(axis=0).tolist()


def test_vertical_counter_counts_past_uint16():
    # 70,000 rows: the count no longer fits the uint16 used for short runs
    t, n = 70_000, 64
    c = np.zeros((t, n), bool)
    c[:, 0] = True
    c[::3, 1] = True
    vc = VerticalCounter(n)
    p = np.packbits(c, axis=1)
    for a in range(0, t, 9_999):
        vc.add(p[a:a + 9_999])
    assert vc.counts()[:3].tolist() == [70_000, len(range(0, t, 3)), 0]


def test_vertical_counter_does_not_keep_references_to_caller_buffers():
    # readers reuse their buffer; a pending row must have been copied
    n = 16
    buf = np.zeros((1, 2), np.uint8)
    vc = VerticalCounter(n)
    buf[:] = 0xFF
    vc.add(buf)          # odd row: parked as pending
    buf[:] = 0x00        # the reader overwrites its buffer
    vc.add(buf)
    assert vc.counts().tolist() == [1] * n


def test_vertical_counter_ignores_padding_bits():
    n = 10
    p = np.packbits(np.ones((5, n), bool), axis=1)
    p[:, 1] |= 0b111111
    vc = VerticalCounter(n)
    vc.add(p)
    assert vc.counts().tolist() == [5] * n


def test_vertical_counter_counts_is_repeatable_mid_stream():
    rng = np.random.default_rng(7)
    c = random_correct(rng, 11, 90)
    p = np.packbits(c, axis=1)
    vc = VerticalCounter(90)
    vc.add(p[:5])
    assert vc.counts().tolist() == c[:5].sum(0).tolist()
    assert vc.counts().tolist() == c[:5].sum(0).tolist()  # counts() changed nothing
    vc.add(p[5:])
    assert vc.counts().tolist() == c.sum(0).tolist()


def test_vertical_counter_refuses_wrong_rows():
    vc = VerticalCounter(9)
    with pytest.raises(ValueError):
        vc.add(np.zeros((2, 1), np.uint8))
    with pytest.raises(ValueError):
        vc.add_words(np.zeros((2, 2), np.uint64))
