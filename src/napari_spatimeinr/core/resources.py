"""Memory and disk of this machine, and the checks that refuse what does not fit (one line each)."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path

from .errors import LimitError, SpatimeINRError
from .text import fmt_bytes, fmt_shape

#: glibc ``mallopt`` parameters: blocks of at least this many bytes are memory-mapped, so that a
#: freed frame-sized temporary goes back to the system instead of staying in the heap
MMAP_THRESHOLD = 1 << 20
#: at most this many malloc arenas: each thread (dask, torch) otherwise gets its own, and freed
#: memory stays resident in each of them
ARENA_MAX = 2
_malloc_tuned = False


def tune_malloc() -> bool:
    """Keep a long render or training from holding memory it freed (glibc on Linux only; the
    environment's ``MALLOC_MMAP_THRESHOLD_``/``MALLOC_ARENA_MAX`` win). Measured on a 12-frame
    56 × 320 × 352 stack rendered t × 2: peak RSS 2.30 GB without, see benchmarks/RESULTS.md.
    Returns whether it was applied (once per process)."""
    global _malloc_tuned
    if _malloc_tuned:
        return True
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
            libc.mallopt(-3, MMAP_THRESHOLD)  # M_MMAP_THRESHOLD
        if "MALLOC_ARENA_MAX" not in os.environ:
            libc.mallopt(-8, ARENA_MAX)  # M_ARENA_MAX
    except (OSError, AttributeError):  # not glibc (musl, …)
        return False
    _malloc_tuned = True
    return True


def available_memory() -> int:
    """Bytes of memory available to a new allocation (``psutil``, else ``/proc/meminfo``)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # pragma: no cover - psutil missing
        try:
            with open("/proc/meminfo") as fh:
                for line in fh:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 8 * 2**30


def memory_margin() -> int:
    """Memory left to the rest of the machine (the GUI, other users): 10% of it, at least 512 MB."""
    try:
        import psutil

        total = int(psutil.virtual_memory().total)
    except Exception:  # pragma: no cover
        total = 8 * 2**30
    return max(512 * 2**20, total // 10)


def memory_limit() -> int:
    """Bytes a plan may use at its peak: available memory minus :func:`memory_margin`."""
    return max(0, available_memory() - memory_margin())


def nearest_existing(path: str | Path) -> Path:
    """``path`` itself if it exists, else its nearest existing parent folder."""
    p = Path(os.path.abspath(os.path.expanduser(str(path))))
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def free_disk(path: str | Path) -> int:
    """Free bytes on the disk that would hold ``path`` (its nearest existing folder)."""
    p = nearest_existing(path)
    if not p.is_dir():
        p = p.parent
    return int(shutil.disk_usage(p).free)


def check_writable(path: str | Path, what: str = "output") -> None:
    """Refuse, naming ``path`` as given, when its folder is missing or cannot take a new file.

    The folder is probed by creating and removing a temporary file there (permission bits alone
    mislead: root, read-only mounts, ``/proc``).
    """
    import errno

    given = str(path)
    target = Path(os.path.abspath(os.path.expanduser(given)))
    parent = target.parent
    if not parent.exists():
        raise SpatimeINRError(
            f"Cannot write the {what} {given}: the folder {parent} does not exist. Create it or "
            "choose another path."
        )
    if not parent.is_dir():
        raise SpatimeINRError(
            f"Cannot write the {what} {given}: {parent} is a file, not a folder. Choose another path."
        )
    try:
        fd, probe = tempfile.mkstemp(prefix=".spatimeinr-probe-", dir=parent)
    except OSError as exc:
        reason = {
            errno.EACCES: "permission denied",
            errno.EPERM: "permission denied",
            errno.EROFS: "read-only file system",
            errno.ENOSPC: "the disk is full",
            errno.EDQUOT: "disk quota exceeded",
        }.get(exc.errno or 0, "it does not accept new files")
        raise SpatimeINRError(
            f"Cannot write the {what} {given}: the folder {parent} is not writable ({reason}). "
            "Choose another path."
        ) from None
    os.close(fd)
    try:
        os.unlink(probe)
    except OSError:  # pragma: no cover
        pass


def check_memory(need: int, what: str, hint: str) -> None:
    """Refuse when ``need`` bytes exceed :func:`memory_limit`."""
    limit = memory_limit()
    if need > limit:
        raise LimitError(
            f"Not enough memory: {what} needs about {fmt_bytes(need)} but only "
            f"{fmt_bytes(limit)} is available (free memory minus a {fmt_bytes(memory_margin())} "
            f"margin). {hint}"
        )


def check_disk(need: int, path: str | Path, what: str, hint: str, force: bool = False) -> None:
    """Refuse when ``need`` bytes do not fit the free space of ``path``'s disk (unless ``force``)."""
    if force:
        return
    free = free_disk(path)
    if need > free:
        raise LimitError(
            f"Not enough disk space: {what} needs about {fmt_bytes(need)} but "
            f"{nearest_existing(path)} has {fmt_bytes(free)} free. {hint} (--force skips this "
            "check.)"
        )


def check_read(shape: tuple[int, ...], name: str) -> None:
    """Refuse reading a stack whose float32 copy (and one temporary) would not fit in memory."""
    need = 2 * 4 * math.prod(int(s) for s in shape)
    check_memory(
        need,
        f"reading {name} (shape {fmt_shape(shape)}) as float32",
        "Crop the stack first (e.g. in Fiji), or use a machine with more memory.",
    )
