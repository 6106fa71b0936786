"""Fault injection, for the tests only (tests/test_reliability_kill_train.py).

A test that kills a writer at random moments rarely hits the few milliseconds of an epoch's
write (measured: 0 of 13 random kills of `dyn train`). So the writer names the points in between
(`epoch 3 (metrics, split/val, split/test, weights): flushed`, `open: repaired`), and with
$DYN_TEST_PAUSE set it says each on stderr as `dyn-test: <point>` and sleeps there, so that the
test can kill it at exactly that moment. $DYN_TEST_PAUSE is `SECONDS` (every point) or
`SECONDS:TEXT` (only the points whose name contains TEXT; the others are only said). Unset, as
everywhere outside those tests, it does nothing.
"""

from __future__ import annotations

import os
import time


def test_point(where: str) -> None:
    spec = os.environ.get("DYN_TEST_PAUSE")
    if spec is None:
        return
    os.write(2, f"dyn-test: {where}\n".encode())
    seconds, _, text = spec.partition(":")
    if text in where and float(seconds or 0) > 0:
        time.sleep(float(seconds))


test_point.__test__ = False  # not a pytest test, whatever its name
