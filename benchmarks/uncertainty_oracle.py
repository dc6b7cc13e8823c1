"""Oracle ceilings for per-voxel uncertainty maps on the temporal x4 protocol (issue #16).

Input: a ``.npz`` written from an :class:`~napari_spatimeinr.workflows.evaluate.protocol.EvalResult` of the
DESIGN.md protocol (temporal x4), with the arrays ``truth`` (TZYX), ``inp`` (every 4th frame),
``scored`` (left-out frame indices), ``spatimeinr`` (the render), ``unc`` (the engine's map) and
the baselines ``linear`` and ``motion``::

    res = ...  # the EvalResult of run_evaluation(src, "temporal", 4, ...)
    np.savez(out, truth=res.truth, inp=res.input, scored=res.degraded.scored,
             unc=res.uncertainty, **res.reconstructions)

Every figure is :func:`napari_spatimeinr.engines.fast.uncertainty.report_metrics` (the report's Spearman,
random subsample above ``REPORT_VOXELS``, and top-decile ratio) of a candidate map against
|error| = |render - truth| on the scored frames of the *test half* of the movie. The two splits:
``A->B`` trains on the scored frames of the first half of the movie and tests on those of the
second half; ``B->A`` the other way round. Maps:

* ``learned``: a 2D CNN (per z-plane; with Z > 1 it also sees the planes z-1 and z+1) trained
  on the true |error| of the training half (Laplace negative log-likelihood, so ``exp`` of its
  output estimates E|error|), from all the engine knows at render time: the render, the two
  neighbouring measured frames (raw and warped to the instant by TV-L1 flow), their differences,
  the linear and motion baselines, the distance to the nearest measured frame and the fraction of
  the way between them, and the engine's map ``unc``;
* ``smooth_err_s{σ}``: Gaussian-smoothed |error| of the same frame (σ in y-x; ``_z``: also in z);
  ``_loo``: the centre voxel's own weight removed (a smooth map that knows the neighbours' errors,
  not the voxel's);
* ``noise_floor``: the truth split into a smooth part S (Gaussian σ=1 in y-x) and noise whose std
  is estimated per intensity bin of S; errors are simulated as (render - S) + noise and scored
  against the ideal map E|error| (folded normal): what any map can reach when the noise of the
  left-out frame is the unpredictable part (``noise_only``: the same with render = S);
  ``noise_floor_map_vs_actual``: that ideal map scored against the actual |error|;
  ``noise_floor_pixel``: the same with the noise std estimated per camera pixel (y, x) instead
  of per intensity bin (sCMOS-like pixel noise);
* ``engine``, ``intensity``, ``distance``, ``intensity_x_distance``: the engine's map and the
  report's trivial maps on the same voxels.

    python benchmarks/uncertainty_oracle.py ctc.npz --seconds 300 --seed 0 [--ablate 120]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
from scipy import ndimage
from scipy.special import erf

from napari_spatimeinr.engines.fast.motion import tvl1_flow, warp_pair
from napari_spatimeinr.engines.fast.uncertainty import report_metrics, top_decile_ratio

FEATURES = [
    "render",
    "a",
    "b",
    "abs_a_b",
    "aw",
    "bw",
    "abs_aw_bw",
    "linear",
    "motion",
    "render_m_motion",
    "render_m_linear",
    "distance",
    "alpha",
    "unc",
]
GROUPS = {
    "render": ["render"],
    "neighbours": ["a", "b", "abs_a_b"],
    "warped": ["aw", "bw", "abs_aw_bw"],
    "baselines": ["linear", "motion", "render_m_motion", "render_m_linear"],
    "time": ["distance", "alpha"],
    "unc": ["unc"],
}


def load(path: str) -> dict[str, np.ndarray]:
    d = np.load(path, allow_pickle=False)
    return {k: d[k] for k in d.files}


def frame_geometry(T: int, scored: list[int]) -> dict[int, tuple[int, int, float, float]]:
    """Per scored frame t: (previous kept, next kept, alpha, distance to nearest kept)."""
    kept = [t for t in range(T) if t not in set(scored)]
    geo = {}
    for t in scored:
        prev = max((k for k in kept if k <= t), default=min(kept))
        nxt = min((k for k in kept if k >= t), default=max(kept))
        alpha = (t - prev) / (nxt - prev) if nxt != prev else 0.0
        dist = float(min(abs(k - t) for k in kept))
        geo[t] = (prev, nxt, alpha, dist)
    return geo


def build_features(d: dict[str, np.ndarray], log=print) -> tuple[np.ndarray, dict]:
    """Features (N_scored, C, Z, Y, X) float32, normalized intensities; and the geometry."""
    truth, inp = d["truth"], d["inp"]
    T = truth.shape[0]
    scored = [int(t) for t in d["scored"]]
    kept = [t for t in range(T) if t not in set(scored)]
    assert len(kept) == inp.shape[0], (len(kept), inp.shape)
    frame = {k: inp[i].astype(np.float32) for i, k in enumerate(kept)}
    lo, hi = np.percentile(inp, [0.1, 99.9])
    scale = float(hi - lo) or 1.0
    geo = frame_geometry(T, scored)
    flows: dict[tuple[int, int], np.ndarray] = {}
    t0 = time.time()
    Z = truth.shape[1]
    sp = (truth.shape[1], truth.shape[2], truth.shape[3]) if Z > 1 else truth.shape[2:]
    for prev, nxt, _, _ in geo.values():
        if prev != nxt and (prev, nxt) not in flows:
            a = np.clip((frame[prev] - lo) / scale, 0, 1).reshape(sp)
            b = np.clip((frame[nxt] - lo) / scale, 0, 1).reshape(sp)
            flows[(prev, nxt)] = tvl1_flow(a, b)
    log(f"  flows: {len(flows)} pairs in {time.time() - t0:.0f} s")
    feats = np.zeros((len(scored), len(FEATURES)) + truth.shape[1:], np.float32)
    for j, t in enumerate(scored):
        prev, nxt, alpha, dist = geo[t]
        a, b = frame[prev], frame[nxt]
        if prev != nxt:
            aw, bw = warp_pair(a, b, flows[(prev, nxt)], alpha)
        else:
            aw, bw = a, b
        r = d["spatimeinr"][t]
        f = {
            "render": r,
            "a": a,
            "b": b,
            "abs_a_b": np.abs(a - b) + lo,
            "aw": aw,
            "bw": bw,
            "abs_aw_bw": np.abs(aw - bw) + lo,
            "linear": d["linear"][t],
            "motion": d["motion"][t],
            "render_m_motion": r - d["motion"][t] + lo,
            "render_m_linear": r - d["linear"][t] + lo,
        }
        for i, name in enumerate(FEATURES):
            if name in f:
                feats[j, i] = (f[name] - lo) / scale
        feats[j, FEATURES.index("distance")] = dist / 2.0
        feats[j, FEATURES.index("alpha")] = alpha
        feats[j, FEATURES.index("unc")] = d["unc"][t] / scale
    return feats, {"geo": geo, "scale": scale, "lo": lo}


class Net(torch.nn.Module):
    """Plain dilated CNN; receptive field 1 + 2·(1 + Σ dilations) = 29 px."""

    def __init__(self, cin: int, width: int = 32, dilations=(1, 1, 2, 2, 4, 2, 1)):
        super().__init__()
        layers = [torch.nn.Conv2d(cin, width, 3, padding=1)]
        for dl in dilations:
            layers += [torch.nn.SiLU()]
            layers += [torch.nn.Conv2d(width, width, 3, padding=dl, dilation=dl)]
        layers += [torch.nn.SiLU(), torch.nn.Conv2d(width, 1, 1)]
        self.net = torch.nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def plane_stack(x: np.ndarray, z: int) -> np.ndarray:
    """(C, Z, ...) -> (3C, ...) with planes z-1, z, z+1 (clamped) when Z > 1, else (C, ...)."""
    Z = x.shape[1]
    if Z == 1:
        return x[:, 0]
    zs = [max(z - 1, 0), z, min(z + 1, Z - 1)]
    return x[:, zs].reshape((-1,) + x.shape[2:])


def train_predict(
    feats: np.ndarray,
    err: np.ndarray,
    train: list[int],
    test: list[int],
    channels: list[int],
    seconds: float,
    seed: int,
    crop: int = 48,
    batch: int = 8,
    width: int = 32,
    log=print,
) -> np.ndarray:
    """Train on frames ``train`` (indices into feats), return log E|err| on frames ``test``."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    f = feats[:, channels]
    N, C, Z, Y, X = f.shape
    cin = C * (3 if Z > 1 else 1)
    net = Net(cin, width)
    with torch.no_grad():
        net.net[-1].bias.fill_(math.log(float(err[train].mean()) + 1e-8))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    cy, cx = min(crop, Y), min(crop, X)
    t0, step, run = time.time(), 0, []
    while True:
        el = time.time() - t0
        if el > seconds:
            break
        # cosine decay on the time budget
        for g in opt.param_groups:
            g["lr"] = 1e-3 * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(el / seconds, 1))))
        xs, ys = [], []
        for _ in range(batch):
            j = train[rng.integers(len(train))]
            z = int(rng.integers(Z))
            y0, x0 = int(rng.integers(Y - cy + 1)), int(rng.integers(X - cx + 1))
            xs.append(plane_stack(f[j][:, :, y0 : y0 + cy, x0 : x0 + cx], z))
            ys.append(err[j, z, y0 : y0 + cy, x0 : x0 + cx])
        xb = torch.from_numpy(np.stack(xs))
        if rng.random() < 0.5:
            xb, yb = xb.flip(-1), torch.from_numpy(np.stack(ys))[:, None].flip(-1)
        else:
            yb = torch.from_numpy(np.stack(ys))[:, None]
        if rng.random() < 0.5:
            xb, yb = xb.flip(-2), yb.flip(-2)
        s = net(xb)
        loss = (yb * torch.exp(-s) + s).mean()  # Laplace NLL: exp(s) -> E|err|
        opt.zero_grad()
        loss.backward()
        opt.step()
        run.append(float(loss.detach()))
        step += 1
        if step % 500 == 0:
            log(f"    step {step} ({el:.0f} s) loss {np.mean(run[-500:]):.4f}")
    log(f"    trained {step} steps in {time.time() - t0:.0f} s")
    out = np.zeros((len(test), Z, Y, X), np.float32)
    net.eval()
    with torch.no_grad():
        for i, j in enumerate(test):
            for z in range(Z):
                out[i, z] = net(torch.from_numpy(plane_stack(f[j], z))[None])[0, 0].numpy()
    return out


def metrics(m: np.ndarray, err: np.ndarray, ren: np.ndarray, dist: np.ndarray, seed: int) -> dict:
    return report_metrics(m, err, ren, dist, seed)


def smooth_oracles(err: np.ndarray, Z: int) -> dict[str, np.ndarray]:
    """Gaussian-smoothed |err| per frame (err: (N, Z, Y, X))."""
    out = {}
    for s in (1, 2, 4):
        out[f"smooth_err_s{s}"] = ndimage.gaussian_filter(err, (0, 0, s, s), mode="nearest")
        if Z > 1:
            out[f"smooth_err_s{s}_z"] = ndimage.gaussian_filter(err, (0, s, s, s), mode="nearest")
    # leave-centre-out σ=1 (y-x): remove the voxel's own weight and renormalize
    delta = np.zeros((9, 9), np.float32)
    delta[4, 4] = 1
    w0 = float(ndimage.gaussian_filter(delta, 1, mode="constant")[4, 4])
    out["smooth_err_s1_loo"] = (out["smooth_err_s1"] - w0 * err) / (1 - w0)
    return out


def noise_floor(truth_s: np.ndarray, render_s: np.ndarray, err: np.ndarray, seed: int) -> dict:
    """Simulated errors (render - S) + noise(S); the ideal map E|error| (folded normal)."""
    sig = (0, 0, 1, 1)
    S = ndimage.gaussian_filter(truth_s, sig, mode="nearest")
    r = truth_s - S
    delta = np.zeros((1, 1, 9, 9), np.float32)
    delta[0, 0, 4, 4] = 1
    k = float(((delta - ndimage.gaussian_filter(delta, sig, mode="constant")) ** 2).sum())
    sd = np.empty_like(S)
    flat_s, flat_r, flat_sd = S.reshape(-1), r.reshape(-1), sd.reshape(-1)
    order = np.argsort(flat_s)
    for b in np.array_split(order, 50):
        flat_sd[b] = math.sqrt(float(np.mean(flat_r[b] ** 2)) / k)
    rng = np.random.default_rng(seed + 7)
    dsm = render_s - S

    def folded(mu, s):
        s = np.maximum(s, 1e-6)
        return s * math.sqrt(2 / math.pi) * np.exp(-(mu**2) / (2 * s**2)) + mu * erf(
            mu / (s * math.sqrt(2))
        )

    ideal = folded(dsm, sd)
    # per camera pixel (y, x): noise std from the residuals of all scored frames and planes
    sdp = np.broadcast_to(np.sqrt((r**2).mean(axis=(0, 1), keepdims=True) / k), S.shape)
    simp = np.abs(dsm + sdp * rng.standard_normal(sd.shape).astype(np.float32))
    sim = np.abs(dsm + sd * rng.standard_normal(sd.shape).astype(np.float32))
    sim0 = np.abs(sd * rng.standard_normal(sd.shape).astype(np.float32))
    return {
        "ideal": ideal.astype(np.float32),
        "sim": sim,
        "ideal_pixel": folded(dsm, sdp).astype(np.float32),
        "sim_pixel": simp,
        "noise_only_map": sd,
        "noise_only_sim": sim0,
        "noise_var_fraction": float(np.mean(sd**2) / np.mean(err.astype(np.float64) ** 2)),
        "noise_sd_mean": float(sd.mean()),
        "smooth_err_rms": float(np.sqrt(np.mean(dsm.astype(np.float64) ** 2))),
        "err_rms": float(np.sqrt(np.mean(err.astype(np.float64) ** 2))),
    }


def fmt(m: dict) -> str:
    sp = m["spearman"]
    td = m["top_decile_ratio"]
    return f"{sp:7.3f} {td:6.2f}" if sp is not None else "    n/a    n/a"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("npz", help=".npz from the evaluation (see the module docstring)")
    ap.add_argument("--seconds", type=float, default=300.0, help="training seconds per model")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--ablate",
        type=float,
        default=0.0,
        help="seconds per ablation model (A->B split only); 0: no ablations",
    )
    ap.add_argument(
        "--insample",
        type=float,
        default=0.0,
        help="seconds for a model trained on all scored frames and scored on each half "
        "(in-sample: what the inputs can explain at all); 0: skip",
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--width", type=int, default=32, help="CNN channels")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t_start = time.time()

    def log(msg: str) -> None:
        print(f"[{time.time() - t_start:6.0f} s] {msg}", flush=True)

    d = load(args.npz)
    truth = d["truth"].astype(np.float32)
    T, Z = truth.shape[:2]
    scored = [int(t) for t in d["scored"]]
    log(f"{args.npz}: truth {truth.shape}, {len(scored)} scored frames")
    feats, info = build_features(d, log)
    geo, scale = info["geo"], info["scale"]
    render = d["spatimeinr"][scored].astype(np.float32)
    err = np.abs(render - truth[scored])
    errn = err / scale
    dist = np.array([geo[t][3] for t in scored], np.float32)[:, None, None, None]
    half_a = [j for j, t in enumerate(scored) if t < T / 2]
    half_b = [j for j, t in enumerate(scored) if t >= T / 2]
    splits = {"A->B": (half_a, half_b), "B->A": (half_b, half_a)}
    log(f"split A: frames {[scored[j] for j in half_a]}; B: {[scored[j] for j in half_b]}")

    maps: dict[str, np.ndarray] = {"engine": d["unc"][scored].astype(np.float32)}
    maps.update(smooth_oracles(err, Z))
    nf = noise_floor(truth[scored], render, err, args.seed)
    log(
        f"noise floor: noise sd {nf['noise_sd_mean']:.3f}, smooth-error rms "
        f"{nf['smooth_err_rms']:.3f}, |error| rms {nf['err_rms']:.3f}, noise variance / "
        f"error MSE {nf['noise_var_fraction']:.2f}"
    )
    maps["noise_floor_map_vs_actual"] = nf["ideal"]
    maps["noise_floor_pixel_map_vs_actual"] = nf["ideal_pixel"]
    learned: dict[str, dict[str, np.ndarray]] = {}
    all_ch = list(range(len(FEATURES)))
    for name, (tr, te) in splits.items() if args.seconds > 0 else ():
        log(f"learned oracle {name}: training {args.seconds:.0f} s")
        learned[name] = {
            "learned": train_predict(
                feats, errn, tr, te, all_ch, args.seconds, args.seed, width=args.width, log=log
            )
        }
    insample = None
    if args.insample > 0:
        every = half_a + half_b
        log(f"learned in-sample (train = test = all scored frames): {args.insample:.0f} s")
        insample = train_predict(
            feats, errn, every, every, all_ch, args.insample, args.seed, width=args.width, log=log
        )
    ablations = {}
    if args.ablate > 0:
        tr, te = splits["A->B"]
        sets = {
            "learned_all_short": all_ch,
            "learned_no_unc": [i for i, f in enumerate(FEATURES) if f not in GROUPS["unc"]],
            "learned_no_warped": [i for i, f in enumerate(FEATURES) if f not in GROUPS["warped"]],
            "learned_render_time": [FEATURES.index(f) for f in GROUPS["render"] + GROUPS["time"]],
            "learned_unc_only": [FEATURES.index("unc")],
            "learned_neighbours_time": [
                FEATURES.index(f) for f in GROUPS["neighbours"] + GROUPS["warped"] + GROUPS["time"]
            ],
        }
        for nm, ch in sets.items():
            log(f"ablation {nm}: {[FEATURES[i] for i in ch]}")
            ablations[nm] = train_predict(
                feats, errn, tr, te, ch, args.ablate, args.seed, width=args.width, log=log
            )

    rows = (
        ["learned"]
        + (["learned_in_sample"] if insample is not None else [])
        + list(ablations)
        + [k for k in maps if k.startswith("smooth")]
    )
    rows += ["noise_floor (simulated)", "noise_only (simulated)", "noise_floor_map_vs_actual"]
    rows += ["noise_floor_pixel (simulated)", "noise_floor_pixel_map_vs_actual"]
    rows += ["engine", "intensity", "distance", "intensity_x_distance"]
    table: dict[str, dict[str, str]] = {r: {} for r in rows}
    for name, (_tr, te) in splits.items():
        e, ren, ds = err[te], render[te], dist[te]
        base = metrics(maps["engine"][te], e, ren, ds, args.seed)
        table["engine"][name] = fmt(base)
        for tn, v in base["trivial_spearman"].items():
            # top-decile ratio of the trivial map itself
            tm = {"intensity": ren, "distance": np.broadcast_to(ds, e.shape)}.get(tn)
            if tm is None:
                tm = ren * ds
            table[tn][name] = f"{v:7.3f} {top_decile_ratio(tm, e):6.2f}"
        if name in learned:
            table["learned"][name] = fmt(
                metrics(np.exp(learned[name]["learned"]), e, ren, ds, args.seed)
            )
        if insample is not None:
            pos = [(half_a + half_b).index(j) for j in te]
            table["learned_in_sample"][name] = fmt(
                metrics(np.exp(insample[pos]), e, ren, ds, args.seed)
            )
        if name == "A->B":
            for nm, p in ablations.items():
                table[nm][name] = fmt(metrics(np.exp(p), e, ren, ds, args.seed))
        for k, m in maps.items():
            if k == "engine":
                continue
            table[k][name] = fmt(metrics(m[te], e, ren, ds, args.seed))
        table["noise_floor (simulated)"][name] = fmt(
            metrics(nf["ideal"][te], nf["sim"][te], ren, ds, args.seed)
        )
        table["noise_floor_pixel (simulated)"][name] = fmt(
            metrics(nf["ideal_pixel"][te], nf["sim_pixel"][te], ren, ds, args.seed)
        )
        table["noise_only (simulated)"][name] = fmt(
            metrics(nf["noise_only_map"][te], nf["noise_only_sim"][te], ren, ds, args.seed)
        )
    print()
    print(f"{'map':32s} " + " ".join(f"{n + ' rho  top10':>16s}" for n in splits))
    for r in rows:
        print(f"{r:32s} " + " ".join(f"{table[r].get(n, ''):>16s}" for n in splits))
    print(f"\nwall time {time.time() - t_start:.0f} s")


if __name__ == "__main__":
    main()
