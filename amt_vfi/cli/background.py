"""Overlapping decode, compute and encode: iterators fed and drained by threads with bounded queues."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def prefetch(items: Iterable[T], depth: int = 4) -> Iterator[T]:
    """Produce `items` on a worker thread, at most `depth` ahead of the consumer."""
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        buffer.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put(_DONE)
        except BaseException as error:  # handed to the consumer, who re-raises it
            buffer.put(_Failure(error))

    worker = threading.Thread(target=produce, name="amt-vfi-prefetch", daemon=True)
    worker.start()
    try:
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
        self._thread = threading.Thread(target=self._drain, name="amt-vfi-writer", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while (item := self._queue.get()) is not _DONE:
            if self._error is None:
                try:
                    self._write(item)
                except BaseException as error:  # reported to the producer on its next call
                    self._error = error

    def put(self, item: T) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(item)

    def finish(self) -> None:
        """Wait until everything is written; re-raise a write failure."""
        self._queue.put(_DONE)
        self._thread.join()
        if self._error is not None:
            raise self._error
