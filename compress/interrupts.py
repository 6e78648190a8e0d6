"""Ctrl-C (SIGINT) at safe points: files being written are finished before the interrupt takes effect.

Python turns SIGINT into ``KeyboardInterrupt`` wherever the main thread happens to be. Atomic writes
already keep a half-written file from appearing under its real name, but an epoch is several files
(checkpoints, metrics, resume state) that must agree; ``deferred_interrupt`` holds a SIGINT back until
the block has written all of them, so the last completed epoch is always resumable.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from types import FrameType
from typing import Any, Iterator


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Run the block to its end even if SIGINT arrives; then raise ``KeyboardInterrupt`` for it."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread gets signals
        yield
        return
    received: list[int] = []

    def remember(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous: Any = signal.signal(signal.SIGINT, remember)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt
