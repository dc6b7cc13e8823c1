"""Writing and printing an evaluation report.

``write_report(report, "run.json")`` writes ``run.json`` (the report), ``run.csv`` (one row per method
and scored frame: ``method, t, psnr, ssim``) and ``run.png`` (per-frame PSNR of every method), each
atomically. ``format_table(report)`` is the short table the CLI prints.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from ...core.errors import SpatimeINRError
from ...store.model_dir import atomic_write

CSV_FIELDS = ("method", "t", "psnr", "ssim")


def _clean(obj: Any) -> Any:
    """JSON-safe copy: non-finite floats become None, numpy scalars plain numbers."""
    if hasattr(obj, "tolist"):  # numpy scalars and arrays
        obj = obj.tolist()
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def report_paths(path_json: str | Path) -> tuple[Path, Path, Path]:
    """The JSON path and its CSV and PNG siblings (``run.json`` → ``run.csv``, ``run.png``)."""
    p = Path(path_json)
    stem = p.with_suffix("") if p.suffix.lower() == ".json" else p
    return p, stem.with_name(stem.name + ".csv"), stem.with_name(stem.name + ".png")


def per_frame_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per method and scored frame: ``{"method", "t", "psnr", "ssim"}``."""
    rows = []
    for name, entry in report["results"].items():
        for r in entry.get("per_frame", []):
            rows.append({"method": name, "t": r["t"], "psnr": r["psnr"], "ssim": r["ssim"]})
    return rows


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(_clean(report), indent=2, allow_nan=False)


def to_csv(report: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    for row in per_frame_rows(report):
        w.writerow({k: ("" if row[k] is None else row[k]) for k in CSV_FIELDS})
    return buf.getvalue()


def plot_per_frame(report: dict[str, Any], ax: Any, methods: list[str] | None = None) -> None:
    """Draw per-frame PSNR curves of ``methods`` (default: all) on a matplotlib ``ax``."""
    method = report.get("method")
    names = methods if methods is not None else list(report["results"])
    for name in names:
        entry = report["results"].get(name)
        if entry is None:
            continue
        pf = entry.get("per_frame", [])
        ts = [r["t"] for r in pf]
        ps = [r["psnr"] if r["psnr"] is not None else float("nan") for r in pf]
        main = name == method
        ax.plot(
            ts,
            ps,
            marker="o",
            markersize=3 if not main else 4,
            linewidth=2.2 if main else 1.0,
            label=name,
            zorder=3 if main else 2,
        )
    task = report.get("task", "")
    ax.set_xlabel("frame (withheld)" if task == "temporal" else "frame")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(f"{task} ×{report.get('factor')}: per-frame PSNR", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)


def plot_overall(report: dict[str, Any], ax: Any, methods: list[str] | None = None) -> None:
    """Bars of the overall PSNR per method (for single-frame checks, e.g. a volume)."""
    names = methods if methods is not None else list(report["results"])
    names = [n for n in names if n in report["results"]]
    values = [report["results"][n]["psnr"] for n in names]
    values = [float("nan") if v is None else v for v in values]
    colors = [f"C{i}" for i in range(len(names))]
    ypos = list(range(len(names)))[::-1]  # first method on top
    ax.barh(ypos, values, color=colors)
    ax.set_yticks(ypos, names)
    finite = [v for v in values if v == v]
    if finite:
        ax.set_xlim(min(finite) - 1.0, max(finite) + 0.6)
        for y, v in zip(ypos, values, strict=True):
            if v == v:
                ax.text(v + 0.05, y, f"{v:.2f}", va="center", fontsize=8)
    ax.set_xlabel("PSNR (dB)")
    ax.set_title(
        f"{report.get('task', '')} ×{report.get('factor')}: PSNR"
        + (" (z only)" if report.get("z_only") else ""),
        fontsize=10,
    )
    ax.grid(True, axis="x", alpha=0.3)


def plot_uncertainty(report: dict[str, Any], ax: Any) -> bool:
    """Per scored frame: the mean predicted uncertainty beside the mean actual |error| (raw
    units); the title gives the voxel-wise Spearman. False (nothing drawn) without an entry."""
    unc = report.get("uncertainty")
    if not unc or not unc.get("per_frame"):
        return False
    pf = unc["per_frame"]
    ts = [r["t"] for r in pf]
    ax.plot(
        ts, [r["mean_abs_error"] for r in pf], marker="o", markersize=3, label="held-out |error|"
    )
    ax.plot(
        ts,
        [r["mean_predicted"] for r in pf],
        marker="s",
        markersize=3,
        linestyle="--",
        label="predicted uncertainty",
    )
    rho = unc.get("spearman")
    ax.set_xlabel("frame (withheld)")
    ax.set_ylabel("mean per frame")
    ax.set_ylim(bottom=0)
    ax.set_title(
        "uncertainty vs error" + (f" (voxel Spearman {rho:.2f})" if rho is not None else ""),
        fontsize=10,
    )
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return True


def plot_report(report: dict[str, Any], ax: Any, methods: list[str] | None = None) -> None:
    """Per-frame PSNR curves, or bars of the overall PSNR when a single frame is scored."""
    if len(report.get("scored_frames", [])) > 1:
        plot_per_frame(report, ax, methods)
    else:
        plot_overall(report, ax, methods)


def _write_png(report: dict[str, Any], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with_unc = bool(report.get("uncertainty", {}).get("per_frame"))
    fig = Figure(figsize=(7, 7 if with_unc else 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(211 if with_unc else 111)
    plot_report(report, ax)
    if with_unc:
        plot_uncertainty(report, fig.add_subplot(212))
    fig.tight_layout()
    atomic_write(path, lambda fh: fig.savefig(fh, format="png"))


def write_report(report: dict[str, Any], path_json: str | Path) -> tuple[Path, Path, Path]:
    """Write the JSON report, a CSV of per-frame metrics and a PNG plot beside it.

    Returns the three paths ``(json, csv, png)``.
    """
    pj, pc, pp = report_paths(path_json)
    if not pj.parent.exists():
        raise SpatimeINRError(
            f"The folder {pj.parent} does not exist: create it or choose another -o."
        )
    text = to_json(report)
    atomic_write(pj, lambda fh: fh.write(text.encode()))
    csv_text = to_csv(report)
    atomic_write(pc, lambda fh: fh.write(csv_text.encode()))
    _write_png(report, pp)
    for p in (pj, pc, pp):  # temporary files are created private; reports are ordinary files
        p.chmod(0o644)
    return pj, pc, pp


def read_report(path_json: str | Path) -> dict[str, Any]:
    """Read a report written by :func:`write_report`."""
    return json.loads(Path(path_json).read_text())


def _f(v: float | None, fmt: str) -> str:
    """Format ``v``, or a dash of the same width for a missing value."""
    width = int("".join(c for c in fmt.split(".")[0] if c.isdigit()) or 0)
    return f"{'—':>{width}}" if v is None else format(v, fmt)


def format_table(report: dict[str, Any]) -> str:
    """A short text table: one row per method with PSNR, SSIM, ΔPSNR against the best baseline."""
    results = report["results"]
    method = report.get("method")
    best = report.get("best_baseline")
    best_psnr = results[best]["psnr"] if best in results else None
    head = f"{'method':<12} {'PSNR dB':>8} {'SSIM':>7} {'vs best':>8} {'train s':>8}  note"
    lines = [
        f"{report['task']} ×{report['factor']}"
        + (" (z only)" if report.get("z_only") else "")
        + f": input {tuple(report['input_shape'])} → truth {tuple(report['truth_shape'])}, "
        f"{len(report.get('scored_frames', []))} scored frame(s)",
        head,
        "-" * len(head),
    ]
    for name, e in results.items():
        delta = e["psnr"] - best_psnr if e["psnr"] is not None and best_psnr is not None else None
        note = []
        if name == method:
            note.append("evaluated")
        if name == best:
            note.append("best baseline")
        if name == "smoothed" and "base" in e:
            note.append(f"{e['base']}, sigma {e['sigma']:g}")
        train = e.get("train_seconds")
        lines.append(
            f"{name:<12} {_f(e['psnr'], '8.2f')} {_f(e['ssim'], '7.4f')} "
            f"{_f(delta, '+8.2f')} {_f(train if name == method else None, '8.1f')}  "
            + "; ".join(note)
        )
    unc = report.get("uncertainty")
    if unc:
        triv = unc.get("trivial_spearman", {})
        lines.append(
            f"uncertainty: Spearman {_f(unc.get('spearman'), '.3f')} with |error| "
            f"(intensity {_f(triv.get('intensity'), '.3f')}, distance "
            f"{_f(triv.get('distance'), '.3f')}, product {_f(triv.get('intensity_x_distance'), '.3f')}); "
            f"top decile {_f(unc.get('top_decile_ratio'), '.2f')}x the mean |error|"
        )
    return "\n".join(lines)
