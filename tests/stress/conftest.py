"""Hard time bounds for the stress tests: a hang prints every thread's stack instead of stalling CI.

Two layers, both armed for every test in this directory:

* pytest-timeout (``@pytest.mark.timeout(N)``, or the ``timeout = 60`` of setup.cfg) fails the
  test after N seconds and prints the stacks of all threads;
* :func:`faulthandler.dump_traceback_later`, armed here ``DUMP_MARGIN`` seconds before that, dumps
  every thread's stack from a C watchdog thread, so the stacks are printed even if the hang
  holds the GIL or swallows pytest-timeout's signal.

The tests themselves also join their workers with a bound (``stress_tools.join_or_fail``), which
usually reports a hang first, with the stuck workers' stacks.
"""

from __future__ import annotations

import faulthandler
from typing import Iterator

import pytest

#: Seconds before the test's timeout at which faulthandler dumps every thread's stack.
DUMP_MARGIN: float = 5.0


def _test_bound(request: pytest.FixtureRequest) -> float:
    marker = request.node.get_closest_marker("timeout")
    if marker is not None and marker.args:
        return float(marker.args[0])
    if marker is not None and "timeout" in marker.kwargs:
        return float(marker.kwargs["timeout"])
    return float(request.config.getini("timeout") or 60)


@pytest.fixture(autouse=True)
def _dump_stacks_before_timeout(request: pytest.FixtureRequest) -> Iterator[None]:
    """Arm faulthandler's watchdog for this test; disarm it afterwards."""
    bound = _test_bound(request)
    faulthandler.dump_traceback_later(max(1.0, bound - DUMP_MARGIN), exit=False)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
