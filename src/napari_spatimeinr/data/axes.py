"""Mapping file axes to the canonical TZYX order.

Inference rule for files without axis metadata (documented in the README):
2D → YX, 3D → ZYX (a volume; pass ``--axes TYX`` for a 2D time-lapse), 4D → TZYX,
5D → TCZYX (the ImageJ hyperstack order), so a channel must then be chosen.
"""

from __future__ import annotations

import numpy as np

from ..core.errors import SpatimeINRError

DEFAULT_AXES = {2: "YX", 3: "ZYX", 4: "TZYX", 5: "TCZYX"}

# Names some files use for axes, mapped to ours (OME-Zarr uses lowercase names, tifffile uses
# letters such as "Q" for unknown and "S" for samples/RGB).
_ALIASES = {"I": "Z", "S": "C", "Q": None}


def normalize_axes(axes: str) -> str:
    return axes.upper()


def infer_axes(ndim: int) -> str:
    if ndim not in DEFAULT_AXES:
        raise SpatimeINRError(
            f"Cannot use an image with {ndim} dimensions: expected 2 to 5 (T, C, Z, Y, X). "
            "Give --axes to say which axis is which."
        )
    return DEFAULT_AXES[ndim]


def check_axes(axes: str, ndim: int) -> str:
    axes = normalize_axes(axes)
    if len(axes) != ndim:
        raise SpatimeINRError(
            f"The axes {axes!r} name {len(axes)} dimensions but the image has {ndim}: give --axes "
            f"with {ndim} letters from T, C, Z, Y, X (e.g. {infer_axes(ndim) if ndim in DEFAULT_AXES else 'TZYX'})."
        )
    bad = [a for a in axes if a not in "TCZYX"]
    if bad or len(set(axes)) != len(axes):
        raise SpatimeINRError(
            f"The axes {axes!r} are ambiguous: use each of T, C, Z, Y, X at most once "
            "(e.g. --axes TZYX)."
        )
    if "Y" not in axes or "X" not in axes:
        raise SpatimeINRError(f"The axes {axes!r} must include Y and X (e.g. --axes TZYX).")
    return axes


def select_channel(data: np.ndarray, axes: str, channel: int | None) -> tuple[np.ndarray, str]:
    """Drop the channel axis by taking ``channel``; never merge channels silently."""
    if "C" not in axes:
        if channel not in (None, 0):
            raise SpatimeINRError(
                f"--channel {channel} was given but the image has no channel axis (axes {axes})."
            )
        return data, axes
    ci = axes.index("C")
    n = data.shape[ci]
    if n == 1:
        channel = 0
    elif channel is None:
        raise SpatimeINRError(
            f"The image has {n} channels (axes {axes}): choose one with --channel N (0..{n - 1}), "
            f"or, if that axis is not colour but z or time, give the axes to read it as a stack "
            f"(e.g. --axes {'TZYX'[-len(axes) :] if len(axes) <= 4 else 'TCZYX'})."
        )
    if not 0 <= channel < n:
        raise SpatimeINRError(
            f"--channel {channel} is out of range: the image has channels 0..{n - 1}."
        )
    # Basic indexing: a view of memory-mapped or lazy (dask) data, not a copy.
    index = tuple(channel if i == ci else slice(None) for i in range(data.ndim))
    return data[index], axes.replace("C", "")


def to_tzyx(data: np.ndarray, axes: str, channel: int | None = None) -> np.ndarray:
    """Return ``data`` (given in ``axes`` order) as a TZYX array, adding T/Z of length 1 if absent."""
    axes = check_axes(axes, data.ndim)
    data, axes = select_channel(data, axes, channel)
    for a in "TZ":
        if a not in axes:
            data = data[np.newaxis]
            axes = a + axes
    order = [axes.index(a) for a in "TZYX"]
    return np.transpose(data, order)


def from_file_axes(file_axes: str, shape: tuple[int, ...]) -> str:
    """Map a file's axis letters (tifffile's ``TZCYXS`` plus ``I``/``Q``/... for unknown) to TCZYX.

    ``S`` (samples, e.g. RGB) becomes the channel axis. Unknown letters are filled by the
    inference rule of this module: if no letter other than Y, X and C is known, the remaining
    axes follow :data:`DEFAULT_AXES` (3 → Z, 4 → T, Z); otherwise each unknown axis gets, from the
    right, the first unused of Z, T, C.
    """
    file_axes = file_axes.upper()
    if len(file_axes) != len(shape):
        raise SpatimeINRError(
            f"The file's axes {file_axes!r} do not match its shape {tuple(shape)}: give --axes."
        )
    letters: list[str | None] = []
    for a in file_axes:
        if a == "S":
            if "C" in file_axes:
                raise SpatimeINRError(
                    f"The image has both channels and colour samples (axes {file_axes}, shape "
                    f"{tuple(shape)}): split the channels first (e.g. Fiji: Image > Color > "
                    "Split Channels) and read one of them."
                )
            a = "C"
        letters.append(a if a in "TCZYX" else None)
    used = {a for a in letters if a}
    if "Y" not in used or "X" not in used:
        raise SpatimeINRError(
            f"Cannot tell which axes of the file are Y and X (axes {file_axes}): give --axes."
        )
    unknown = [i for i, a in enumerate(letters) if a is None]
    if unknown:
        if used - {"Y", "X", "C"}:
            pool = [a for a in "ZTC" if a not in used]
            for i in reversed(unknown):
                if not pool:
                    raise SpatimeINRError(
                        f"The axes of the file are ambiguous ({file_axes}, shape {tuple(shape)}): "
                        "give --axes (e.g. TZYX)."
                    )
                letters[i] = pool.pop(0)
        else:
            default = DEFAULT_AXES.get(len(unknown) + 2)
            if default is None or ("C" in default[:-2] and "C" in used):
                raise SpatimeINRError(
                    f"The axes of the file are ambiguous ({file_axes}, shape {tuple(shape)}): "
                    "give --axes (e.g. TZYX)."
                )
            for i, a in zip(unknown, default[:-2], strict=True):
                letters[i] = a
    return "".join(a for a in letters if a)
