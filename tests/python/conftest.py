"""Shared fixtures: every test leaves no actor system behind.

After each test (sync or async) the global system is shut down and every system created during
the test must have been shut down; leftovers are released and the test fails naming them.
"""

from __future__ import annotations

import asyncio

import pulsing
import pytest
from pulsing.core import system as _system_mod


def _release(system) -> None:
    """Release a system that cannot be shut down on the current loop."""
    try:
        system._abandon()
    except Exception:  # noqa: BLE001 - best effort
        _system_mod._live_systems.discard(system)


async def _cleanup(before: set) -> list:
    # The global system is the test's to leave running: shut it down quietly.
    try:
        await pulsing.shutdown()
    except Exception:  # noqa: BLE001
        from pulsing import core

        if core._system is not None:
            _release(core._system)
            core._system = None
    leftovers = [s for s in list(_system_mod._live_systems) if s not in before]
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    for s in leftovers:
        if s._loop is running and not s._closed:
            try:
                await s.shutdown()
            except Exception:  # noqa: BLE001
                _release(s)
        else:
            _release(s)
        _system_mod._live_systems.discard(s)
    return leftovers


@pytest.fixture(autouse=True)
async def _no_leftover_systems():
    before = set(_system_mod._live_systems)
    yield
    leftovers = await _cleanup(before)
    if leftovers:
        pytest.fail(
            "actor systems left running by the test (now released): "
            + ", ".join(repr(s) for s in leftovers),
            pytrace=False,
        )
