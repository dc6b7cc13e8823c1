"""Console helpers of the CLI: one-line messages, progress bars, byte and time formats, Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
from contextlib import contextmanager


def _say(args: argparse.Namespace, msg: str) -> None:
    if not getattr(args, "quiet", False):
        print(msg, file=sys.stderr, flush=True)


def _bar(args: argparse.Namespace, total: int | None, desc: str, unit: str = "it"):
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        disable=getattr(args, "quiet", False),
        dynamic_ncols=True,
        leave=True,
    )


@contextmanager
def _graceful_stop():
    """First Ctrl-C asks long work to stop at the next step (keeping a usable result)."""
    state = {"stop": False}

    def handler(signum, frame):  # noqa: ARG001
        if state["stop"]:
            raise KeyboardInterrupt
        state["stop"] = True
        print("\nStopping after the current step (Ctrl-C again to abort)…", file=sys.stderr)

    try:
        old = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not in the main thread
        old = None
    try:
        yield lambda: state["stop"]
    finally:
        if old is not None:
            signal.signal(signal.SIGINT, old)


def _stage(message: str) -> str:
    """The stage of an evaluation progress message: its first word (baseline, motion, train, ...)."""
    words = message.replace(":", " ").split()
    return words[0] if words else ""
