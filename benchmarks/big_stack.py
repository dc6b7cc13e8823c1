"""Memory and time of training and rendering a big stack (issue 23): peak RSS of the process tree.

    nice -n 5 python benchmarks/big_stack.py                      # 48 x 56 x 320 x 352, 300 s
    nice -n 5 python benchmarks/big_stack.py --shape 12 56 320 352 --time-limit 60
    nice -n 5 python benchmarks/big_stack.py --src /path/to/other/checkout/src   # "before"

Makes a synthetic uint16 ImageJ TZYX TIFF of moving nuclei (written frame by frame,
:func:`napari_spatimeinr.data.synthetic.write_nuclei_tiff`; kept in ``--workdir`` for the next
run), then runs ``spatimeinr train STACK -o MODEL --time-limit S`` and ``spatimeinr render MODEL
-o OUT.ome.zarr --scale-t K`` as subprocesses (``python -m napari_spatimeinr.cli`` with ``--src``
first on ``PYTHONPATH``), sampling the resident memory of each process and its children every
0.1 s. Prints one table: wall time, peak RSS, what was stated beforehand (the render's peak memory
and time, the training's peak memory when the CLI states one), the model directory's size against
the file's, and the load average of the machine (it is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

UNITS = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}


def tree_rss(proc: psutil.Process) -> int:
    """Resident bytes of ``proc`` and all its children (0 once gone)."""
    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_sampled(cmd: list[str], env: dict[str, str], log: Path) -> dict:
    """Run ``cmd``; its wall time, peak tree RSS, exit status and stderr (also written to ``log``)."""
    t0 = time.perf_counter()
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=err, stderr=subprocess.STDOUT)
        ps = psutil.Process(proc.pid)
        peak = 0
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, tree_rss(ps))
                done.wait(0.1)

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        rc = proc.wait()
        done.set()
        th.join()
    return {
        "cmd": " ".join(cmd),
        "rc": rc,
        "seconds": time.perf_counter() - t0,
        "peak_rss": peak,
        "log": log.read_text(errors="replace"),
    }


def parse_bytes(text: str) -> float | None:
    m = re.match(r"([\d.]+)\s*([KMGT]?B)", text.strip())
    return float(m.group(1)) * UNITS[m.group(2)] if m else None


def parse_seconds(text: str) -> float | None:
    """``45 s``, ``2 min 05 s``, ``1 h 02 min`` (core.text.fmt_seconds) back to seconds."""
    text = text.strip()
    for pat, f in (
        (r"(\d+) h (\d+) min", lambda a, b: 3600 * a + 60 * b),
        (r"(\d+) min (\d+) s", lambda a, b: 60 * a + b),
        (r"(\d+) s", lambda a: a),
    ):
        m = re.match(pat, text)
        if m:
            return float(f(*(int(g) for g in m.groups())))
    return None


def stated(log: str) -> dict:
    """The peak memory and time a command stated before working (None where it stated none)."""
    out: dict = {"peak": None, "seconds": None}
    m = re.search(r"peak memory about ([\d.]+ [KMGT]?B)", log)
    if m:
        out["peak"] = parse_bytes(m.group(1))
    m = re.search(r"estimated time ([^;\n]+)", log)
    if m:
        out["seconds"] = parse_seconds(m.group(1))
    return out


def du(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", type=int, nargs=4, default=(48, 56, 320, 352), help="T Z Y X")
    p.add_argument("--time-limit", type=float, default=300.0)
    p.add_argument("--scale-t", type=float, default=2.0)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/spatimeinr_big_stack"))
    p.add_argument("--src", type=Path, default=Path(__file__).resolve().parents[1] / "src")
    p.add_argument("--label", default="", help="a name for this run in the table")
    p.add_argument("--skip-train", action="store_true", help="render the model already there")
    p.add_argument("--skip-render", action="store_true")
    p.add_argument("--json", type=Path, help="append the figures as one JSON line")
    args = p.parse_args()

    args.workdir.mkdir(parents=True, exist_ok=True)
    shape = tuple(args.shape)
    stack = args.workdir / f"nuclei_{'x'.join(map(str, shape))}.tif"
    if not stack.is_file():
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # the generator
        from napari_spatimeinr.data.synthetic import write_nuclei_tiff

        t0 = time.perf_counter()
        write_nuclei_tiff(stack.with_suffix(".tmp.tif"), shape)
        os.replace(stack.with_suffix(".tmp.tif"), stack)
        print(f"made {stack} in {time.perf_counter() - t0:.0f} s", flush=True)
    model = args.workdir / "model.spatimeinr"
    out = args.workdir / "render.ome.zarr"
    env = dict(os.environ, PYTHONPATH=str(args.src))
    cli = [sys.executable, "-m", "napari_spatimeinr.cli"]
    rows = []
    file_bytes = stack.stat().st_size
    if not args.skip_train:
        load0 = load()
        r = run_sampled(
            [
                *cli,
                "train",
                str(stack),
                "-o",
                str(model),
                "--time-limit",
                f"{args.time_limit:g}",
                "--overwrite",
            ],
            env,
            args.workdir / "train.log",
        )
        r.update(step="train", load_before=load0, load_after=load(), stated=stated(r["log"]))
        r["model_bytes"] = du(model) if model.exists() else None
        rows.append(r)
    if not args.skip_render:
        shutil.rmtree(out, ignore_errors=True)
        load0 = load()
        r = run_sampled(
            [*cli, "render", str(model), "-o", str(out), "--scale-t", f"{args.scale_t:g}"],
            env,
            args.workdir / "render.log",
        )
        r.update(step="render", load_before=load0, load_after=load(), stated=stated(r["log"]))
        rows.append(r)

    gb = 1e9
    print(f"\nstack {'x'.join(map(str, shape))} uint16, {file_bytes / gb:.3f} GB; src {args.src}")
    print("| step | rc | time | peak RSS | stated time | stated peak | model dir | load (1/5/15) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        st = r["stated"]
        model_col = (
            f"{r['model_bytes'] / gb:.3f} GB ({r['model_bytes'] / file_bytes:.2f}× file)"
            if r.get("model_bytes")
            else ""
        )
        print(
            f"| {r['step']} {args.label} | {r['rc']} | {r['seconds']:.0f} s | "
            f"{r['peak_rss'] / gb:.2f} GB | "
            + (f"{st['seconds']:.0f} s" if st["seconds"] is not None else "")
            + (f" ({st['seconds'] / r['seconds']:.2f}×)" if st["seconds"] else "")
            + " | "
            + (
                f"{st['peak'] / gb:.2f} GB ({st['peak'] / r['peak_rss']:.2f}×)"
                if st["peak"]
                else ""
            )
            + f" | {model_col} | {r['load_before']} → {r['load_after']} |"
        )
        if r["rc"] != 0:
            print(r["log"][-3000:])
    if args.json:
        with open(args.json, "a") as fh:
            for r in rows:
                fh.write(
                    json.dumps(
                        {k: v for k, v in r.items() if k != "log"}
                        | {"shape": shape, "label": args.label, "file_bytes": file_bytes}
                    )
                    + "\n"
                )


if __name__ == "__main__":
    main()
