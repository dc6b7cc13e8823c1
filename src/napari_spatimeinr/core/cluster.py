"""Rendering on a dask.distributed cluster: a local one (``--workers N``) or an existing scheduler.

:func:`dask_client` is a context manager yielding a :class:`distributed.Client` that is the default
dask scheduler while it is open, so the lazy render (:mod:`.lazy`) and the writers (``io.write``)
run on the cluster without any other change: every chunk task carries only the model directory's
absolute path and its coordinate vectors, and each worker process loads the renderer once
(``lazy.get_renderer`` caches it per process) and resolves ``device="auto"`` itself, on its own
hardware. Before the first task, every worker is asked whether it can see the model directory, so
a path that exists only on the client fails with one clear message instead of a traceback per task.

Faults: when a worker dies, the scheduler reruns its tasks on the others (chunk tasks are pure and
the writers' chunk writes idempotent); a task that has killed ``distributed.scheduler.allowed-failures``
workers is given up, and that is reported as one :class:`SpatimeINRError`.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import SpatimeINRError

#: seconds to wait for a scheduler to answer, and for an external cluster's first worker
DEFAULT_TIMEOUT = 15.0


def local_threads_per_worker(workers: int, cpus: int | None = None) -> int:
    """Threads for each of ``workers`` local worker processes: the machine's cores shared out."""
    cpus = cpus or os.cpu_count() or 1
    return max(1, cpus // max(1, workers))


def _gpu_count() -> int:
    """CUDA devices visible to this process (0 without torch or a GPU)."""
    try:
        import torch

        return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
    except Exception:  # pragma: no cover - torch missing or broken
        return 0


def start_local_cluster(
    workers: int,
    threads_per_worker: int | None = None,
    *,
    gpus: int | None = None,
    memory_limit: int | None = None,
):
    """A local cluster (a :class:`distributed.SpecCluster`, as ``LocalCluster`` builds) of
    ``workers`` processes on 127.0.0.1, with no dashboards.

    With ``gpus`` CUDA devices (counted here when None), worker ``i`` sees only device
    ``i % gpus`` (``CUDA_VISIBLE_DEVICES``), so ``device="auto"`` puts each worker on its own GPU.
    Memory is shared out evenly between the workers unless ``memory_limit`` (bytes) is given.
    Returns once every worker is up; a worker that cannot start is one :class:`SpatimeINRError`.
    """
    import logging

    import psutil
    from distributed import Nanny, Scheduler, SpecCluster

    if workers < 1:
        raise SpatimeINRError(f"--workers {workers}: ask for at least 1 worker process.")
    threads = threads_per_worker or local_threads_per_worker(workers)
    memory_limit = memory_limit or int(psutil.virtual_memory().total // workers)
    gpus = _gpu_count() if gpus is None else gpus
    scheduler = {
        "cls": Scheduler,
        "options": {
            "host": "127.0.0.1",
            "port": 0,
            "protocol": "tcp://",
            "dashboard": False,
            # the scheduler's small HTTP server (health checks) on a free local port
            "dashboard_address": "127.0.0.1:0",
        },
    }
    options = {
        "host": "127.0.0.1",
        "nthreads": threads,
        "memory_limit": memory_limit,
        "dashboard": False,
        "dashboard_address": None,
        "silence_logs": logging.WARNING,
    }
    specs = {}
    for i in range(workers):
        env = {"CUDA_VISIBLE_DEVICES": str(i % gpus)} if gpus > 0 else {}
        specs[i] = {"cls": Nanny, "options": dict(options, env=env)}
    try:
        return SpecCluster(
            workers=specs,
            scheduler=scheduler,
            worker={"cls": Nanny, "options": options},
            silence_logs=logging.WARNING,
            name="spatimeinr-local",
        )
    except (RuntimeError, OSError, TimeoutError) as err:
        raise SpatimeINRError(
            f"Could not start {workers} local dask worker processes ({err}). In a Python script, "
            "start the cluster under `if __name__ == '__main__':`; otherwise check the "
            "worker log above."
        ) from None


def connect(address: str, timeout: float = DEFAULT_TIMEOUT):
    """A :class:`distributed.Client` of the scheduler at ``address``, or one clear error.

    ``address`` is ``tcp://HOST:PORT`` (``HOST:PORT`` is read as TCP) or the path of a scheduler
    file written by ``dask scheduler --scheduler-file FILE`` (usual on HPC clusters).
    """
    from distributed import Client

    kwargs: dict[str, Any]
    if address.endswith(".json") or Path(address).is_file():
        if not Path(address).is_file():
            raise SpatimeINRError(
                f"Scheduler file {address} not found: start the scheduler with "
                f"`dask scheduler --scheduler-file {address}` first, or pass tcp://HOST:PORT."
            )
        kwargs = {"scheduler_file": address}
    else:
        if "://" not in address:
            address = f"tcp://{address}"
        kwargs = {"address": address}
    try:
        return Client(**kwargs, timeout=timeout, set_as_default=True)
    except (OSError, TimeoutError, ValueError) as err:
        raise SpatimeINRError(
            f"Could not reach a dask scheduler at {address} within {timeout:g} s ({err}). "
            "Start one with `dask scheduler` and pass the address it prints "
            "(tcp://HOST:PORT) to --scheduler, or use --workers N for a local cluster."
        ) from None


def _probe(path: str, out_dir: str | None = None) -> dict[str, Any]:
    """Runs on each worker: can it see the model directory (and the output's folder)?"""
    from .. import __version__

    p = Path(path)
    return {
        "exists": p.is_dir() and (p / "meta.json").is_file(),
        "out_ok": out_dir is None or (Path(out_dir).is_dir() and os.access(out_dir, os.W_OK)),
        "version": __version__,
        "host": socket.gethostname(),
    }


def check_workers(
    client,
    model_dir: str | Path,
    output: str | Path | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> int:
    """Check that the cluster has workers and that each can read ``model_dir``; their number.

    Paths are made absolute first (a relative path means nothing on another machine). With an
    ``output`` ending in ``.zarr`` (written by the workers themselves), each worker must also be
    able to write into its folder.
    """
    path = str(Path(model_dir).resolve())
    out_dir = None
    if output is not None and str(output).rstrip("/").lower().endswith(".zarr"):
        out_dir = str(Path(output).resolve().parent)
    if not client.nthreads():
        try:
            client.wait_for_workers(1, timeout=timeout)
        except TimeoutError:
            raise SpatimeINRError(
                f"The dask scheduler at {client.scheduler.address} has no workers after "
                f"{timeout:g} s: start some with `dask worker {client.scheduler.address}`."
            ) from None
    answers = client.run(_probe, path, out_dir, on_error="return")
    missing, broken, no_out = [], [], []
    for worker, answer in sorted(answers.items()):
        if isinstance(answer, BaseException):
            broken.append(f"{worker} ({type(answer).__name__}: {answer})")
        elif not answer["exists"]:
            missing.append(f"{worker} on {answer['host']}")
        elif not answer["out_ok"]:
            no_out.append(f"{worker} on {answer['host']}")
    if broken:
        raise SpatimeINRError(
            "Some dask workers cannot run napari-spatimeinr: "
            + "; ".join(broken[:3])
            + ". Install the same napari-spatimeinr version in the workers' environment."
        )
    if missing:
        raise SpatimeINRError(
            f"The model directory {path} is not visible to {len(missing)} of {len(answers)} dask "
            f"workers ({', '.join(missing[:3])}). Put it on a filesystem that every worker "
            "mounts at the same path (e.g. your cluster's shared home or scratch)."
        )
    if no_out:
        raise SpatimeINRError(
            f"The output folder {out_dir} does not exist or is not writable on {len(no_out)} of "
            f"{len(answers)} dask workers ({', '.join(no_out[:3])}); they write the .zarr chunks "
            "themselves: write it to a shared filesystem that every worker mounts."
        )
    return len(answers)


@contextmanager
def dask_client(
    scheduler: str | None = None,
    workers: int | None = None,
    *,
    model_dir: str | Path | None = None,
    output: str | Path | None = None,
    threads_per_worker: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Iterator[Any]:
    """Run the dask work inside the ``with`` block on a cluster; yields the ``distributed.Client``.

    ``scheduler``: address of an existing scheduler (``tcp://HOST:PORT``); ``workers``: start a
    local cluster of that many worker processes (see :func:`start_local_cluster`). Exactly one of
    them. With ``model_dir`` (and ``output``), every worker is first checked to see the model
    directory (and, for ``.zarr``, to be able to write the output's folder): :func:`check_workers`.
    The cluster started here is closed on exit; an external one is only disconnected from. A task
    that kept killing workers surfaces as one :class:`SpatimeINRError`.
    """
    from distributed import Client

    if (scheduler is None) == (workers is None):
        raise SpatimeINRError("Give either a scheduler address or a number of workers, not both.")
    cluster = None
    if scheduler is not None:
        client = connect(scheduler, timeout)
    else:
        cluster = start_local_cluster(int(workers), threads_per_worker)  # type: ignore[arg-type]
        try:
            client = Client(cluster, set_as_default=True)
            client.wait_for_workers(int(workers), timeout=max(timeout, 60.0))  # type: ignore[arg-type]
        except BaseException:
            cluster.close()
            raise
    try:
        if model_dir is not None:
            check_workers(client, model_dir, output, timeout)
        try:
            yield client
        except Exception as err:
            clear = _cluster_error(err)
            if clear is err:
                raise
            raise clear from None
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _cluster_error(err: Exception) -> Exception:
    """Turn distributed's failures into one readable :class:`SpatimeINRError` (others unchanged)."""
    from distributed import KilledWorker
    from distributed.comm.core import CommClosedError

    if isinstance(err, KilledWorker):
        return SpatimeINRError(
            "Rendering stopped: dask workers kept dying while computing the same chunk "
            f"({err.task!r}). They probably ran out of memory: use a smaller --chunk-mb or give "
            "each worker more memory. No output was written."
        )
    if isinstance(err, CommClosedError | ConnectionError):
        return SpatimeINRError(
            f"Lost the connection to the dask scheduler ({err}). No output was written."
        )
    return err


def active_client():
    """The :class:`distributed.Client` that dask computations use right now, or None."""
    from dask.base import get_scheduler

    scheduler = get_scheduler()
    owner = getattr(scheduler, "__self__", None)
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover - distributed is a dependency
        return None
    return owner if isinstance(owner, Client) else None


def iter_completed(tasks: Sequence[Any], cancel: Callable[[], bool] | None = None) -> Iterator[Any]:
    """Compute dask collections ``tasks`` and yield their results as each one finishes.

    On a dask.distributed cluster (the active default scheduler) all tasks are submitted at once
    and yielded in completion order (``distributed.as_completed``), so progress can follow the
    chunks as they land; elsewhere they are computed together (``dask.compute``) and yielded in
    order. ``cancel()`` is polled after every result: when it returns True the remaining work is
    cancelled and :class:`~napari_spatimeinr.core.errors.StopRequested` raised.
    """
    import dask

    from .errors import StopRequested

    def check() -> None:
        if cancel is not None and cancel():
            raise StopRequested("Cancelled.")

    client = active_client()
    if client is None:
        for result in dask.compute(*tasks):
            check()
            yield result
        return
    from distributed import as_completed

    futures = client.compute(list(tasks))
    try:
        for fut in as_completed(futures):
            result = fut.result()
            check()
            yield result
    finally:
        client.cancel(futures)
        _drain(client, futures)


_SETTLED = frozenset({"memory", "error", "released", "forgotten"})


def _pending_keys(dask_worker, keys) -> list:
    """Which of ``keys`` this worker may still run: held in any state short of settled, or running.

    A task the scheduler has cancelled stays on the worker as ``ready`` (or ``waiting``) until the
    cancel message arrives, and a running one as ``cancelled`` until its thread returns; both can
    still write.
    """
    tasks = dask_worker.state.tasks
    held = [k for k in keys if k in tasks and tasks[k].state not in _SETTLED]
    running = [k for k in dask_worker.active_threads.values() if k in keys]
    return held + running


def _drain(client, futures, timeout: float = 30.0, settle: float = 0.1) -> None:
    """Wait until no worker can still run one of ``futures`` (cancelling does not stop a task).

    Without this, a chunk already being written (or about to start) when an export fails or is
    cancelled could land after the caller removed the temporary output, and recreate it. The
    workers must report nothing pending twice, ``settle`` seconds apart, since a cancel reaches
    them asynchronously.
    """
    import time

    keys = {f.key for f in futures}
    deadline = time.monotonic() + timeout
    quiet = 0
    while time.monotonic() < deadline:
        try:  # the workers' own view
            pending = client.run(_pending_keys, keys=keys)
        except Exception:  # cluster gone: nothing can still be written through it
            return
        quiet = 0 if any(pending.values()) else quiet + 1
        if quiet >= 2:
            return
        time.sleep(settle if quiet else 0.05)


def cluster_summary(client) -> str:
    """One line about the cluster: address, workers, threads."""
    nthreads = client.nthreads()
    return f"{client.scheduler.address} ({len(nthreads)} workers, {sum(nthreads.values())} threads)"


__all__ = [
    "DEFAULT_TIMEOUT",
    "active_client",
    "check_workers",
    "cluster_summary",
    "connect",
    "dask_client",
    "iter_completed",
    "local_threads_per_worker",
    "start_local_cluster",
]
