"""Worker processes exit when the process that started them dies.

A ``kill -9`` of ``omniseg segment --workers 2`` left both workers (~300 MB each) alive for minutes
(issue 13): a killed parent cannot shut its pool down, and a worker blocked waiting for its next
task never notices. Each worker starts a daemon thread that polls its parent's pid (portable: a
dead parent's children are re-parented, so ``os.getppid()`` changes) and ends the process at once.
"""

from __future__ import annotations

import os
import threading
import time

POLL_S = 0.5


def exit_with_parent(parent_pid: int, poll_s: float = POLL_S) -> threading.Thread:
    """Start the watcher: when ``parent_pid`` is no longer this process's parent, ``os._exit(1)``
    (no cleanup runs: there is nobody left to report to, and the driver commits every file)."""

    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                os._exit(1)
            time.sleep(poll_s)

    thread = threading.Thread(target=watch, name="omniseg-orphan-watch", daemon=True)
    thread.start()
    return thread
