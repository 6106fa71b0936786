"""per_sample's reads of a split's records straight from the file (os.preadv at the HDF5 chunks'
addresses) give what h5py gives, for chunks of whole rows and of parts of rows (an ImageNet-sized
split's float16 rows span three chunks), in windows starting anywhere; filtered chunks go
through h5py with the same result."""

from types import SimpleNamespace

import h5py
import numpy as np
import pytest

from dyn.analyze.per_sample import RowReader


@pytest.mark.parametrize("chunks,dtype", [((1, 100), np.float16), ((3, 100), np.float16), ((4, 250), np.float16),
                                          ((2, 64), np.uint8), ((5, 7), np.float32)])
def test_raw_rows_equal_h5py(tmp_path, chunks, dtype):
    rng = np.random.default_rng(0)
    data = (rng.standard_normal((23, 250)) * 50).astype(dtype)
    path = tmp_path / "rows.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=data, chunks=chunks, maxshape=(None, 250))
        f.create_dataset("z", data=data, chunks=chunks, compression="gzip")
    with h5py.File(path, "r") as f:
        run = SimpleNamespace(path=str(path), addresses_are_offsets=True)
        for key, raw in (("x", True), ("z", False)):
            for lo, hi, step in ((0, 23, 23), (0, 23, 4), (3, 20, 5), (7, 8, 1), (22, 23, 3)):
                with RowReader(run, f[key], lo, hi, step) as r:
                    assert (r.plan is not None) == raw
                    got = np.concatenate([r.read(a, min(a + step, hi)).copy() for a in range(lo, hi, step)])
                np.testing.assert_array_equal(got.view(np.uint8), data[lo:hi].view(np.uint8))


def test_a_chunk_not_written_reads_through_h5py(tmp_path):
    path = tmp_path / "rows.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("x", shape=(6, 40), dtype=np.float16, chunks=(1, 40), fillvalue=np.nan)
        ds[:3] = 1
        ds[4:] = 2  # row 3 never written: no chunk on disk
    with h5py.File(path, "r") as f:
        with RowReader(SimpleNamespace(path=str(path), addresses_are_offsets=True), f["x"], 0, 6, 6) as r:
            assert r.plan is None
            np.testing.assert_array_equal(r.read(0, 6), f["x"][:])
