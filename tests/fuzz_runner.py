"""Run CLI invocations one by one, each in a forked child, and report how each ended (issue 13).

Used by ``tests/test_cli_fuzz.py`` in a fresh interpreter::

    python fuzz_runner.py CASES.json RESULTS.json

``CASES.json``: ``{"workdir": DIR, "watch": [DIR, ...], "cases": [[arg, ...], ...]}``. The CLI is
imported once; every case then runs in a child forked from this process (so the import is paid
once), with its stderr captured. Per case the result holds the exit status, the stderr text, the
wall time, the child's peak resident memory (``wait4`` rusage: it includes what the child shares
with this process, so it is an upper bound) and the paths that appeared or vanished under the
watched folders.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback

TIMEOUT_S = 60.0


def _listing(folders: list[str]) -> set[str]:
    seen: set[str] = set()
    for top in folders:
        for root, dirs, files in os.walk(top):
            for name in dirs + files:
                seen.add(os.path.join(root, name))
    return seen


def _child(argv: list[str], err_path: str) -> None:
    fd = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 2)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    code = 99
    try:
        from napari_spatimeinr.cli import main

        code = int(main(argv))
    except SystemExit as end:  # argparse
        code = end.code if isinstance(end.code, int) else 2
    except BaseException:
        traceback.print_exc()
        code = 98
    finally:
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(code)


def run_case(argv: list[str], workdir: str, watch: list[str], err_path: str) -> dict:
    before = _listing(watch)
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.chdir(workdir)
        _child(argv, err_path)
    status, usage, timed_out = 0, None, False
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        if time.perf_counter() - t0 > TIMEOUT_S:
            os.kill(pid, signal.SIGKILL)
            _, status, usage = os.wait4(pid, 0)
            timed_out = True
            break
        time.sleep(0.01)
    seconds = time.perf_counter() - t0
    after = _listing(watch)
    with open(err_path, encoding="utf-8", errors="replace") as fh:
        stderr = fh.read()
    return {
        "argv": argv,
        "rc": os.waitstatus_to_exitcode(status),
        "stderr": stderr,
        "seconds": seconds,
        "max_rss_mb": usage.ru_maxrss / 1024 if usage is not None else None,
        "timed_out": timed_out,
        "appeared": sorted(after - before),
        "vanished": sorted(before - after),
    }


def main() -> None:
    spec = json.load(open(sys.argv[1]))
    import napari_spatimeinr.api  # noqa: F401 - paid once, shared by the forked children
    import napari_spatimeinr.cli  # noqa: F401
    import napari_spatimeinr.workflows.evaluate.protocol  # noqa: F401

    err_path = sys.argv[2] + ".stderr"
    results = [run_case(argv, spec["workdir"], spec["watch"], err_path) for argv in spec["cases"]]
    os.unlink(err_path)
    with open(sys.argv[2], "w") as fh:
        json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
