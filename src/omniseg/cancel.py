"""Cooperative cancellation of one computation (a server request whose client timed out or left).

Python cannot stop a thread from outside, so a timed-out request used to keep its compute slot
until its work ended on its own (issue 13: a 2,000-name request kept the only slot busy long after
its 504). The server runs each job under a ``CancelToken`` (``running(token)``); the long loops of
the library (text encoding batches, embedding-store chunks, the stages of ``Segmenter.segment``)
call ``check()``, which raises ``Cancelled`` once the token is cancelled. Outside a server (CLI,
API) no token is set and ``check()`` costs one attribute lookup.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_local = threading.local()


class Cancelled(Exception):
    """The computation's requester is gone (timed out or disconnected): stop, nothing to answer."""


class CancelToken:
    """Set once (by any thread); read by the worker thread at its check points."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def cancel(self, reason: str = "cancelled") -> None:
        self.reason = self.reason or reason
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


@contextmanager
def running(token: CancelToken) -> Iterator[CancelToken]:
    """Make ``token`` the current thread's token while the block runs."""
    previous = getattr(_local, "token", None)
    _local.token = token
    try:
        yield token
    finally:
        _local.token = previous


def check() -> None:
    """Raise Cancelled if the current thread's computation was cancelled; else nothing."""
    token = getattr(_local, "token", None)
    if token is not None and token.cancelled:
        raise Cancelled(token.reason)
