"""The audit log's availability: a failed append marks it down, and only a successful write probe brings it back."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gateway.audit.log import AuditLog
from gateway.audit.memory_store import MemoryStore
from gateway.audit.store import StoreUnavailable
from gateway.domain import AuditEvent
from gateway.errors import AuditUnavailable
from gateway.testing import FixedClock

EventFactory = Callable[..., AuditEvent]


class _ReadOnlyStore(MemoryStore):
    """Answers reads but takes no writes, like a database on a full disk."""

    full = True

    async def check_writable(self) -> None:
        if self.full:
            raise StoreUnavailable("no space left")


async def test_a_failed_append_marks_the_log_unavailable_until_a_probe_finds_the_store_writable(
    event: EventFactory,
) -> None:
    """Listeners hear "down" once and "up" once; a probe against a store that only reads keeps it down."""
    store = _ReadOnlyStore()
    log = await AuditLog.open(store, None, FixedClock(), checkpoint_interval=None, append_timeout=1.0)
    heard: list[bool] = []
    log.on_availability(heard.append)
    store.unavailable = True
    for i in range(2):
        with pytest.raises(AuditUnavailable):
            await log.append([event(i)])
    assert (log.available, heard) == (False, [False])
    store.unavailable = False  # reads work again, writes do not
    assert await log.probe() is False
    assert (log.available, heard) == (False, [False])
    store.full = False
    assert await log.probe() is True
    assert (log.available, heard) == (True, [False, True])
    (receipt,) = await log.append([event(2)])
    assert (receipt.index, heard) == (0, [False, True])


async def test_entries_that_landed_while_the_log_was_down_are_taken_in_by_the_probe(event: EventFactory) -> None:
    """An entry committed behind the log's back (a commit confirmed too late) joins the tree on recovery."""
    store = MemoryStore()
    log = await AuditLog.open(store, None, FixedClock(), checkpoint_interval=None)
    store.unavailable = True
    with pytest.raises(AuditUnavailable):
        await log.append([event(0)])
    store.unavailable = False
    other = await AuditLog.open(store, None, FixedClock(), checkpoint_interval=None)
    await other.append([event(1)])
    assert log.size == 0
    assert await log.probe() is True
    assert log.size == 1
