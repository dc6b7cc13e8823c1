"""NIfTI-1 writer (.nii, .nii.gz), streamed.

A TZYX array in C order has the same bytes as NIfTI's x, y, z, t array in Fortran order, so a
file is the header (with the provenance in a "comment" extension, code 6) followed by the slabs.
Units: µm and s (``xyzt_units``). For .nii.gz every part is its own gzip member (a valid gzip
stream; the members are compressed in parallel), and the header member is stored uncompressed so
that the clip counts can be filled in at the end without changing its length.
"""

from __future__ import annotations

import gzip
import io
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import nibabel as nib
import numpy as np

from .encode import Encoder, final_counts, provenance_json
from .meta import OutputMeta

_COMMENT = 6
GZIP_LEVEL = 1


def nifti_header(shape: tuple[int, int, int, int], meta: OutputMeta, enc: Encoder) -> bytes:
    """Header + extension bytes (up to ``vox_offset``) of a NIfTI-1 single file for TZYX data."""
    nt, nz, ny, nx = shape
    vz, vy, vx = meta.voxel_size
    ot, oz, oy, ox = meta.origin
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((nx, ny, nz, nt))
    hdr.set_data_dtype(np.dtype(enc.dtype))
    hdr.set_zooms((vx, vy, vz, meta.frame_interval))
    hdr.set_xyzt_units("micron", "sec")
    affine = np.diag([vx, vy, vz, 1.0])
    affine[:3, 3] = (ox, oy, oz)
    hdr.set_qform(affine, code=1)
    hdr.set_sform(affine, code=1)
    hdr["toffset"] = ot
    if enc.mapping == "linear":
        hdr.set_slope_inter(enc.scale, enc.offset)
    else:
        hdr.set_slope_inter(1.0, 0.0)
    hdr["descrip"] = f"napari-spatimeinr {meta.name}"[:79].encode("ascii", "replace")
    hdr["intent_name"] = b"spatimeinr"
    text = provenance_json(meta, enc, final=False)
    hdr.extensions.append(nib.nifti1.Nifti1Extension(_COMMENT, text.encode("utf-8")))
    hdr["vox_offset"] = 0  # let nibabel place the data right after the extension
    buf = io.BytesIO()
    hdr.write_to(buf)
    out = buf.getvalue()
    vox_offset = int(hdr["vox_offset"])
    return out + b"\x00" * (vox_offset - len(out))


def final_header(header: bytes, enc: Encoder) -> bytes:
    if enc.dtype == "float32":
        return header
    out = header
    for token, value in final_counts(enc).items():
        out = out.replace(token.encode(), value.encode())
    return out


def header_member(header: bytes) -> bytes:
    """The header as an uncompressed gzip member (its length depends only on the header's)."""
    return gzip.compress(header, compresslevel=0, mtime=0)


def compress_parts(parts: list[Any], pool: ThreadPoolExecutor) -> list[bytes]:
    """gzip members of byte buffers, compressed in parallel (zlib releases the GIL)."""
    return list(pool.map(lambda b: gzip.compress(b, compresslevel=GZIP_LEVEL, mtime=0), parts))


def provenance_from_header(path: str) -> dict[str, Any] | None:
    """The JSON of our comment extension (for tests and ``info``)."""
    img = nib.load(path)
    for ext in img.header.extensions:
        if ext.get_code() == _COMMENT:
            return json.loads(ext.get_content())
    return None
