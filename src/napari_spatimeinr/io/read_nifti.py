"""NIfTI reader (.nii, .nii.gz): axes x, y, z, t as the SpatimeINR authors' data."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import SpatimeINRError
from .source import SourceImage, apply_provenance, parse_provenance
from .units import positive

# nibabel's names of the xyzt_units codes, in µm and s.
_SPACE_UM = {"meter": 1e6, "mm": 1e3, "micron": 1.0}
_TIME_S = {"sec": 1.0, "msec": 1e-3, "usec": 1e-6}
_NIFTI_AXES = "XYZTC"
_COMMENT = 6  # NIfTI extension code "comment"


def read_nifti(path: Path) -> SourceImage:
    """Read a NIfTI-1/2 image without loading it (memory-mapped for .nii)."""
    import nibabel as nib

    try:
        img = nib.load(str(path))
    except Exception as exc:
        raise SpatimeINRError(
            f"Cannot read {path.name} as NIfTI ({exc}): check that the file is complete."
        ) from None
    hdr = img.header
    shape = tuple(int(s) for s in img.shape)
    if len(shape) > 5:
        raise SpatimeINRError(
            f"Cannot use a NIfTI image with {len(shape)} dimensions (shape {shape}): expected "
            "x, y, z, t and at most one channel dimension."
        )
    src = SourceImage(data=img.dataobj, axes=_NIFTI_AXES[: len(shape)], metadata="nifti")
    slope, inter = hdr.get_slope_inter()
    scaled = (slope not in (None, 1.0) and np.isfinite(slope)) or (
        inter not in (None, 0.0) and np.isfinite(inter)
    )
    src.source_dtype = "float32" if scaled else str(np.dtype(hdr.get_data_dtype()))
    space_unit, time_unit = hdr.get_xyzt_units()
    f_space = _SPACE_UM.get(space_unit)
    if f_space is None:
        src.notes.append(f"NIfTI spatial unit {space_unit!r}: pixdim read as µm")
        f_space = 1.0
    f_time = _TIME_S.get(time_unit)
    if f_time is None:
        src.notes.append(f"NIfTI time unit {time_unit!r}: pixdim read as seconds")
        f_time = 1.0
    # pixdim is float32: take its shortest decimal form (0.26, not 0.25999999046).
    zooms = [float(str(np.float32(z))) for z in hdr.get_zooms()]
    for letter, zoom in zip("XYZ", zooms[:3], strict=False):
        if (v := positive(zoom)) is not None:
            src.spacing[letter] = v * f_space
    if len(zooms) > 3 and (v := positive(zooms[3])) is not None:
        src.spacing["T"] = v * f_time
    affine = img.affine
    if affine is not None and np.allclose(affine[:3, :3], np.diag(np.diag(affine[:3, :3]))):
        for i, letter in enumerate("XYZ"):
            src.origin[letter] = float(affine[i, 3]) * f_space
    toffset = float(hdr["toffset"]) if "toffset" in hdr else 0.0
    if np.isfinite(toffset) and toffset:
        src.origin["T"] = toffset * f_time
    for ext in hdr.extensions:
        if ext.get_code() == _COMMENT:
            prov = parse_provenance(ext.get_content())
            if prov:
                apply_provenance(src, prov)
                # nibabel already applies scl_slope/inter; our record must not apply it twice.
                src.value_scale = None
                if scaled:
                    src.source_dtype = "float32"
                break
    return src
