"""Synthetic 4D sample: moving and dividing nuclei, imaged with an anisotropic PSF and noise.

Pure numpy/scipy (no napari): used by the napari sample-data hook, the CLI demo and the tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from .stack import ChannelStack, Stack4D

#: Realistic acquisition defaults: confocal-like voxels (z, y, x) in µm and 30 s between frames.
VOXEL_SIZE = (1.0, 0.2, 0.2)
FRAME_INTERVAL = 30.0


@dataclass
class _Nucleus:
    pos: np.ndarray  # (z, y, x) in voxels
    vel: np.ndarray  # voxels per frame
    radius: np.ndarray  # (z, y, x) semi-axes in voxels
    brightness: float
    divide_at: int | None


def _nuclei_frames(
    shape: tuple[int, int, int, int],
    n_nuclei: int,
    rng: np.random.Generator,
    psf_sigma: tuple[float, float, float],
    shells: list[np.ndarray] | None = None,
) -> Iterator[np.ndarray]:
    """The noise-free frames (Z, Y, X) float32 of :func:`make_nuclei_timelapse`, one at a time.

    ``shells``: a list that receives, before each frame is yielded, that frame's membrane-like
    shell around each nucleus (at 1.6 radii; :func:`make_two_channel_timelapse`)."""
    nt, nz, ny, nx = shape
    lo = np.array([nz * 0.3, ny * 0.2, nx * 0.2])
    hi = np.array([nz * 0.7, ny * 0.8, nx * 0.8])
    r_xy = max(2.0, min(ny, nx) / 10)
    nuclei = [
        _Nucleus(
            pos=rng.uniform(lo, hi),
            vel=rng.normal(0, 1, 3) * np.array([0.05, 0.6, 0.6]) * r_xy / 4,
            radius=np.array([max(1.0, min(nz / 5, r_xy * 0.6)), r_xy, r_xy])
            * rng.uniform(0.8, 1.2),
            brightness=float(rng.uniform(0.6, 1.0)),
            divide_at=int(rng.integers(nt // 3, max(nt // 3 + 1, 2 * nt // 3)))
            if rng.random() < 0.5 and nt > 3
            else None,
        )
        for _ in range(n_nuclei)
    ]
    zz, yy, xx = np.meshgrid(
        np.arange(nz, dtype=np.float32),
        np.arange(ny, dtype=np.float32),
        np.arange(nx, dtype=np.float32),
        indexing="ij",
    )
    for t in range(nt):
        vol = np.zeros((nz, ny, nx), np.float32)
        shell = np.zeros((nz, ny, nx), np.float32) if shells is not None else None
        for n in list(nuclei):
            if n.divide_at == t:  # split along a random direction in y-x; both daughters shown now
                ang = rng.uniform(0, np.pi)
                d = np.array([0.0, np.sin(ang), np.cos(ang)])
                n.radius = n.radius * 0.8
                n.divide_at = None
                nuclei.append(
                    _Nucleus(
                        n.pos + d * n.radius[1],
                        n.vel + d * 0.4,
                        n.radius.copy(),
                        n.brightness,
                        None,
                    )
                )
                n.pos = n.pos - d * n.radius[1]
                n.vel = n.vel - d * 0.4
        for n in nuclei:
            # soft-edged ellipsoid
            r2 = (
                ((zz - n.pos[0]) / n.radius[0]) ** 2
                + ((yy - n.pos[1]) / n.radius[1]) ** 2
                + ((xx - n.pos[2]) / n.radius[2]) ** 2
            )
            vol += n.brightness / (1 + np.exp(np.minimum((r2 - 1) * 6, 60)))
            if shell is not None:  # a thin shell at 1.6 radii: the cell's membrane
                shell += np.exp(-(((np.sqrt(r2) - 1.6) / 0.18) ** 2))
            n.pos = np.clip(n.pos + n.vel, lo * 0.5, hi + (np.array([nz, ny, nx]) - hi) * 0.5)
        if shells is not None:
            shells.append(ndimage.gaussian_filter(np.minimum(shell, 1.0), psf_sigma))
        yield ndimage.gaussian_filter(vol, psf_sigma)


def make_nuclei_timelapse(
    shape: tuple[int, int, int, int] = (12, 12, 64, 64),
    n_nuclei: int = 6,
    seed: int = 0,
    psf_sigma: tuple[float, float, float] = (1.2, 0.8, 0.8),
    photons: float = 60.0,
    read_noise: float = 2.0,
    background: float = 100.0,
    voxel_size: tuple[float, float, float] = VOXEL_SIZE,
    frame_interval: float = FRAME_INTERVAL,
) -> Stack4D:
    """A (T, Z, Y, X) uint16-valued float32 stack of nuclei that drift, and some of which divide.

    Args:
        shape: (T, Z, Y, X). The default trains on a laptop CPU in about a minute.
        n_nuclei: nuclei at the first frame.
        seed: random seed (same seed, same stack).
        psf_sigma: Gaussian PSF sigma per axis (z, y, x) in voxels; z is wider (anisotropic).
        photons: peak signal in photons per voxel (sets the Poisson noise).
        read_noise: camera read noise (standard deviation, in counts).
        background: camera offset in counts.
        voxel_size: (z, y, x) in µm.
        frame_interval: seconds between frames.
    """
    nt, nz, ny, nx = (int(v) for v in shape)
    rng = np.random.default_rng(seed)
    frames = np.empty((nt, nz, ny, nx), np.float32)
    for t, frame in enumerate(_nuclei_frames((nt, nz, ny, nx), n_nuclei, rng, psf_sigma)):
        frames[t] = frame
    # a fixed illumination / detector pattern (varies by ±15 % across the field)
    texture = ndimage.gaussian_filter(rng.random((nz, ny, nx)), 1.0)
    texture = 0.85 + 0.3 * (texture - texture.min()) / (np.ptp(texture) + 1e-9)
    signal = frames * texture[None] * photons
    counts = rng.poisson(np.clip(signal, 0, None)).astype(np.float32)
    counts += background + rng.normal(0, read_noise, counts.shape).astype(np.float32)
    data = np.clip(np.round(counts), 0, 65535).astype(np.float32)
    stack = Stack4D(
        data,
        voxel_size=voxel_size,
        frame_interval=frame_interval,
        source_axes="TZYX",
        name="synthetic_nuclei",
    )
    stack.extra["source_dtype"] = "uint16"
    return stack


def make_two_channel_timelapse(
    shape: tuple[int, int, int, int] = (12, 12, 64, 64),
    n_nuclei: int = 6,
    seed: int = 0,
    psf_sigma: tuple[float, float, float] = (1.2, 0.8, 0.8),
    photons: tuple[float, float] = (60.0, 40.0),
    read_noise: float = 2.0,
    background: float = 100.0,
    voxel_size: tuple[float, float, float] = VOXEL_SIZE,
    frame_interval: float = FRAME_INTERVAL,
) -> ChannelStack:
    """Two channels of the same moving (and dividing) cells: nuclei (channel 0, ``nuclei``) and a
    membrane-like shell around each nucleus (channel 1, ``membrane``), moving together; each with
    its own Poisson and read noise. Channel 0 is :func:`make_nuclei_timelapse`'s stack for the same
    arguments up to the noise draw."""
    nt, nz, ny, nx = (int(v) for v in shape)
    rng = np.random.default_rng(seed)
    frames = np.empty((nt, nz, ny, nx), np.float32)
    shell_list: list[np.ndarray] = []
    for t, frame in enumerate(
        _nuclei_frames((nt, nz, ny, nx), n_nuclei, rng, psf_sigma, shell_list)
    ):
        frames[t] = frame
    shells = np.stack(shell_list).astype(np.float32)
    texture = ndimage.gaussian_filter(rng.random((nz, ny, nx)), 1.0)
    texture = 0.85 + 0.3 * (texture - texture.min()) / (np.ptp(texture) + 1e-9)
    chans = []
    for clean, ph in zip((frames, shells), photons, strict=True):
        counts = rng.poisson(np.clip(clean * texture[None] * ph, 0, None)).astype(np.float32)
        counts += background + rng.normal(0, read_noise, counts.shape).astype(np.float32)
        stack = Stack4D(
            np.clip(np.round(counts), 0, 65535).astype(np.float32),
            voxel_size=voxel_size,
            frame_interval=frame_interval,
            source_axes="TCZYX",
            name="synthetic_two_channel",
        )
        stack.extra.update({"source_dtype": "uint16", "channels": 2})
        chans.append(stack)
    return ChannelStack(chans, ["nuclei", "membrane"], ["green", "magenta"])


def write_nuclei_tiff(
    path: str | Path,
    shape: tuple[int, int, int, int],
    n_nuclei: int = 12,
    seed: int = 0,
    photons: float = 60.0,
    read_noise: float = 2.0,
    background: float = 100.0,
    voxel_size: tuple[float, float, float] = VOXEL_SIZE,
    frame_interval: float = FRAME_INTERVAL,
) -> Path:
    """Moving nuclei as :func:`make_nuclei_timelapse` makes them, written frame by frame as an
    ImageJ TZYX uint16 TIFF: memory of a few frames at any size (for benchmarks of big stacks).

    The same motion as :func:`make_nuclei_timelapse` of the same ``shape`` and ``seed``; the noise
    is drawn frame by frame (so the voxels differ from it).
    """
    import tifffile

    nt, nz, ny, nx = (int(v) for v in shape)
    rng = np.random.default_rng(seed)
    noise = np.random.default_rng(seed + 1)
    texture = ndimage.gaussian_filter(noise.random((nz, ny, nx)), 1.0).astype(np.float32)
    texture = 0.85 + 0.3 * (texture - texture.min()) / (np.ptp(texture) + 1e-9)

    def frames() -> Iterator[np.ndarray]:
        for frame in _nuclei_frames((nt, nz, ny, nx), n_nuclei, rng, (1.2, 0.8, 0.8)):
            counts = noise.poisson(np.clip(frame * texture * photons, 0, None)).astype(np.float32)
            counts += background + noise.normal(0, read_noise, counts.shape).astype(np.float32)
            yield from np.clip(np.round(counts), 0, 65535).astype(np.uint16)  # one z plane a page

    path = Path(path)
    tifffile.imwrite(
        path,
        frames(),
        shape=(nt, nz, ny, nx),
        dtype=np.uint16,
        imagej=True,
        resolution=(1 / voxel_size[2], 1 / voxel_size[1]),
        metadata={
            "axes": "TZYX",
            "spacing": voxel_size[0],
            "unit": "um",
            "finterval": frame_interval,
        },
    )
    return path


#: z volumes of known truth (issue 22): kind -> what the objects are
Z_KINDS = ("beads", "spheres", "sheets")


def _erf_profile(n: int, centre: float, sigma: float) -> np.ndarray:
    """A unit Gaussian of ``sigma`` voxels at ``centre`` integrated over each of ``n`` voxels."""
    from scipy.special import erf

    edges = (np.arange(n + 1, dtype=np.float64) - 0.5 - centre) / (np.sqrt(2) * sigma)
    return 0.5 * np.diff(erf(edges))


def make_z_volume(
    kind: str = "beads",
    shape: tuple[int, int, int] = (40, 512, 512),
    voxel_size: tuple[float, float, float] = (0.5, 0.0225, 0.0225),
    psf_fwhm: tuple[float, float, float] = (0.8, 0.22, 0.22),
    density: float = 1.0,
    photons: float = 200.0,
    read_noise: float = 2.0,
    background: float = 100.0,
    seed: int = 0,
) -> Stack4D:
    """A single volume (T=1) of ``kind`` objects imaged by an anisotropic Gaussian PSF, with
    Poisson–Gaussian noise; voxels integrate the blurred object over their extent.

    Kinds: ``beads`` (sub-resolution points at sub-voxel positions), ``spheres`` (solid balls of
    about 8 PSF widths: nuclei), ``sheets`` (thin shells of such balls: membranes). ``psf_fwhm`` is
    (z, y, x) in µm; ``photons`` the peak signal per voxel; ``density`` scales the object count.
    ``stack.extra["clean"]`` holds the noiseless volume (same units, background included).
    """
    if kind not in Z_KINDS:
        raise ValueError(f"kind must be one of {Z_KINDS}, not {kind!r}")
    nz, ny, nx = (int(v) for v in shape)
    rng = np.random.default_rng(seed)
    vs = np.asarray(voxel_size, dtype=np.float64)
    sig = np.asarray(psf_fwhm, dtype=np.float64) / (2 * np.sqrt(2 * np.log(2))) / vs  # voxels
    vol = np.zeros((nz, ny, nx), np.float64)
    extent = np.array([nz, ny, nx]) * vs  # µm
    if kind == "beads":
        # about 1 bead per (8 PSF widths)^2 laterally per axial PSF width
        cell = np.prod(np.asarray(psf_fwhm) * np.array([1.0, 8.0, 8.0]))
        count = max(1, int(density * np.prod(extent) / cell))
        for _ in range(count):
            c = rng.uniform(0.0, 1.0, 3) * np.array([nz, ny, nx]) - 0.5
            win = [
                (max(0, int(c[a] - 4 * sig[a])), min(d, int(c[a] + 4 * sig[a]) + 2))
                for a, d in enumerate((nz, ny, nx))
            ]
            if any(lo >= hi for lo, hi in win):
                continue
            p = [_erf_profile(hi - lo, c[a] - lo, sig[a]) for a, (lo, hi) in enumerate(win)]
            b = rng.uniform(0.5, 1.0) / np.prod(_erf_profile(1, 0.0, 1.0) / sig)
            vol[win[0][0] : win[0][1], win[1][0] : win[1][1], win[2][0] : win[2][1]] += (
                b * p[0][:, None, None] * p[1][None, :, None] * p[2][None, None, :]
            )
    else:
        # objects on a z-supersampled grid (4 sub-slices per voxel), blurred, then integrated
        sub = 4
        zs = (np.arange(nz * sub) + 0.5) / sub - 0.5
        zz, yy, xx = np.meshgrid(
            zs * vs[0], np.arange(ny) * vs[1], np.arange(nx) * vs[2], indexing="ij"
        )
        fine = np.zeros(zz.shape, np.float64)
        radius = 4.0 * float(np.mean(psf_fwhm[1:])) * 1.5
        count = max(1, int(density * np.prod(extent) / (2.5 * radius) ** 3))
        for _ in range(count):
            c = rng.uniform(0, 1, 3) * extent
            r = radius * rng.uniform(0.7, 1.3)
            d = np.sqrt((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2)
            b = rng.uniform(0.5, 1.0)
            if kind == "spheres":
                fine = np.maximum(fine, b * (d <= r))
            else:  # a shell one lateral PSF FWHM / 4 thick
                fine = np.maximum(fine, b * (np.abs(d - r) <= psf_fwhm[1] / 4))
        fine = ndimage.gaussian_filter(fine, (sig[0] * sub, sig[1], sig[2]))
        vol = fine.reshape(nz, sub, ny, nx).mean(axis=1)
    peak = max(float(vol.max()), 1e-12)
    clean = vol / peak * photons
    counts = rng.poisson(np.clip(clean, 0, None)).astype(np.float32)
    counts += background + rng.normal(0, read_noise, counts.shape).astype(np.float32)
    data = np.clip(np.round(counts), 0, 65535).astype(np.float32)[None]
    stack = Stack4D(
        data,
        voxel_size=tuple(float(v) for v in voxel_size),
        frame_interval=1.0,
        source_axes="ZYX",
        name=f"synthetic_{kind}",
    )
    stack.extra["source_dtype"] = "uint16"
    stack.extra["clean"] = (clean + background).astype(np.float32)[None]
    return stack
