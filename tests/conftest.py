import os

import pytest

# Under pytest-xdist the workers share the cores: one torch thread per process, or OpenMP's
# spinning threads of two trainings on two cores slow each of them several times (measured: the
# digits claim test, 31 s alone, took 220 s beside another training with 2 threads each).
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ.setdefault("OMP_NUM_THREADS", "1")

from helpers import DIGITS, DIGITS_EPOCHS, run_dyn  # noqa: E402


@pytest.fixture
def dyn():
    return run_dyn


@pytest.fixture(scope="session")
def forkserver(tmp_path_factory):
    """A fork server of `dyn` processes (tests/forkserver.py): real processes, no import cost."""
    from forkserver import ForkServer

    server = ForkServer(tmp_path_factory.mktemp("forkserver"))
    yield server
    server.close()


@pytest.fixture(scope="session")
def digits_reference(tmp_path_factory):
    """The DIGITS run trained once, uninterrupted, by `dyn` in a fresh interpreter."""
    out = tmp_path_factory.mktemp("reference") / "reference.h5"
    r = run_dyn("train", *DIGITS, "--epochs", DIGITS_EPOCHS, "--out", out)
    assert r.returncode == 0, r.stderr
    return out
