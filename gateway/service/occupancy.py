"""How many hub requests the gateway is answering at this moment: the signal that tells the agency transport
whether waiting a moment to coalesce lookups will pay (many requests in progress) or only add latency (one)."""

from __future__ import annotations

from types import TracebackType


class Occupancy:
    """A counter of requests in progress; `with occupancy:` counts one for the duration of the block."""

    __slots__ = ("active",)

    def __init__(self) -> None:
        self.active = 0

    def __enter__(self) -> Occupancy:
        self.active += 1
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.active -= 1
