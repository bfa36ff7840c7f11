"""Overlapping decode, compute and encode: iterators fed and drained by threads with bounded queues.

Every wait that could outlast the other side (a producer on a full queue, `finish` on the writer) is in
short steps that look at a stop flag, so an error or Ctrl-C on one side never leaves the other blocked.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from ..media.atomic import signals_held

T = TypeVar("T")
_DONE = object()
_STEP = 0.1  # seconds between looks at the stop flag


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def _offer(buffer: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Put `item` once there is room; False when `stop` was set first."""
    while not stop.is_set():
        try:
            buffer.put(item, timeout=_STEP)
            return True
        except queue.Full:
            continue
    return False


def prefetch(items: Iterable[T], depth: int = 4) -> Iterator[T]:
    """Produce `items` on a worker thread, at most `depth` ahead of the consumer. Close the iterator
    (`contextlib.closing`) when stopping early: that stops the thread before whatever feeds `items` is
    closed under it."""
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if not _offer(buffer, item, stop):
                    return
            _offer(buffer, _DONE, stop)
        except BaseException as error:  # handed to the consumer, who re-raises it
            _offer(buffer, _Failure(error), stop)

    worker = threading.Thread(target=produce, name="amt-vfi-prefetch", daemon=True)
    try:
        # A Ctrl-C or SIGTERM inside start() would skip the `finally` below with the thread running, and
        # the source would then be closed under it; held, it is raised here, where the thread is stopped.
        with signals_held():
            worker.start()
        while True:
            item = buffer.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        worker.join(timeout=5)


class BackgroundWriter:
    """Calls `write(item)` on a worker thread so encoding overlaps the next computation."""

    def __init__(self, write: Callable[[T], None], depth: int = 4) -> None:
        self._write = write
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._discard = threading.Event()  # set when what is still queued is not wanted any more
        self._thread = threading.Thread(target=self._drain, name="amt-vfi-writer", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while (item := self._queue.get()) is not _DONE:
            if self._error is None and not self._discard.is_set():
                try:
                    self._write(item)
                except BaseException as error:  # reported to the producer on its next call
                    self._error = error

    def put(self, item: T) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(item)

    def finish(self, discard: bool = False) -> None:
        """Wait until everything is written (with `discard`, until the writer has dropped what is left);
        re-raise a write failure.

        A Ctrl-C while waiting drops what is left but still waits for the writer to stop, then re-raises:
        the sink must not be closed while the writer is inside it (FFmpeg crashes).
        """
        if discard:
            self._discard.set()
        interrupt: BaseException | None = None
        done_queued = False
        while not done_queued or self._thread.is_alive():
            try:
                if not done_queued:
                    self._queue.put(_DONE, timeout=_STEP)
                    done_queued = True
                self._thread.join(_STEP)
            except queue.Full:
                continue
            except KeyboardInterrupt as error:
                interrupt = error
                self._discard.set()
        if interrupt is not None:
            raise interrupt
        if self._error is not None and not discard:
            raise self._error
