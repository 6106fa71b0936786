import pytest

from helpers import DIGITS, DIGITS_EPOCHS, run_dyn


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
