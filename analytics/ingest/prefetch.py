"""Run an iterator on a background thread, a bounded number of items ahead."""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def prefetch(items: Iterator[T], depth: int = 1) -> Generator[T, None, None]:
    """Yield ``items``, produced on a thread at most ``depth`` items ahead of the consumer.

    An exception in the producer is re-raised in the consumer; a consumer that stops early
    stops the producer.
    """
    slots: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        slots.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                # The consumer has it now: holding on while the next one is made would keep
                # one more item alive than ``depth`` says.
                del item
                if stop.is_set():
                    return
            slots.put(("done", None))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            slots.put(("error", exc))

    worker = threading.Thread(target=produce, name="aftershock-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            kind, value = slots.get()
            if kind == "done":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        while worker.is_alive():
            try:
                slots.get_nowait()
            except queue.Empty:
                worker.join(timeout=0.1)
