import pytest

from helpers import run_dyn


@pytest.fixture
def dyn():
    return run_dyn
