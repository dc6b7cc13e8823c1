"""What a reading library logs while a file is opened: kept for our one-line message, not printed."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


class LogCollector(logging.Handler):
    """Collects the warnings (and worse) of one logger."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.messages.append(record.getMessage())
        except Exception:  # pragma: no cover
            self.messages.append(str(record.msg))


@contextmanager
def captured_log(name: str) -> Iterator[LogCollector]:
    """Within the block, what logger ``name`` logs goes to the yielded collector only."""
    logger = logging.getLogger(name)
    handler = LogCollector()
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
