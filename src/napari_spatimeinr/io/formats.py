"""File formats known to the readers and writers, recognized by the file name's suffix."""

from __future__ import annotations

from pathlib import Path

from ..core.errors import SpatimeINRError

#: Suffixes :func:`~napari_spatimeinr.io.read.read_stack` understands (longest first where nested).
SUPPORTED_READ_SUFFIXES: tuple[str, ...] = (
    ".tif",
    ".tiff",
    ".ome.tif",
    ".ome.tiff",
    ".nii",
    ".nii.gz",
    ".zarr",
    ".ome.zarr",
    ".npy",
    ".czi",
    ".nd2",
    ".lif",
)

#: Microscope vendors' files, read through bioio (the optional ``formats`` extra).
VENDOR_SUFFIXES: tuple[str, ...] = (".czi", ".nd2", ".lif")

#: Suffixes :func:`~napari_spatimeinr.io.write.write_array` can write.
SUPPORTED_WRITE_SUFFIXES: tuple[str, ...] = (
    ".tif",
    ".tiff",
    ".ome.tif",
    ".ome.tiff",
    ".nii",
    ".nii.gz",
    ".zarr",
    ".ome.zarr",
)

# Format family of each suffix.
_FAMILY = {
    ".tif": "tiff",
    ".tiff": "tiff",
    ".ome.tif": "ome-tiff",
    ".ome.tiff": "ome-tiff",
    ".nii": "nifti",
    ".nii.gz": "nifti",
    ".zarr": "zarr",
    ".ome.zarr": "zarr",
    ".npy": "npy",
    ".czi": "bioio",
    ".nd2": "bioio",
    ".lif": "bioio",
}


def suffix_of(path: str | Path) -> str:
    """The format suffix of a path (or of a bare suffix), lower case, e.g. ``.ome.tif``.

    Compound suffixes win: ``a.ome.tif`` → ``.ome.tif``, ``a.nii.gz`` → ``.nii.gz``. A path without
    a known suffix gives its last suffix (possibly ``""``).
    """
    name = Path(str(path).rstrip("/\\")).name.lower()
    for suffix in sorted(_FAMILY, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    return Path(name).suffix


def family_of(path: str | Path) -> str | None:
    """``tiff``, ``ome-tiff``, ``nifti``, ``zarr``, ``npy``, ``bioio`` (vendor files), or None for
    an unknown suffix."""
    return _FAMILY.get(suffix_of(path))


def stem_of(path: str | Path) -> str:
    """The file name without its format suffix: ``movie.ome.tif`` → ``movie``."""
    name = Path(str(path).rstrip("/\\")).name
    suffix = suffix_of(name)
    return name[: len(name) - len(suffix)] if suffix and len(suffix) < len(name) else name


def _listing(suffixes: tuple[str, ...]) -> str:
    return ", ".join(suffixes)


def read_family(path: str | Path) -> str:
    fam = family_of(path)
    if fam is None:
        raise SpatimeINRError(
            f"Cannot read {Path(path).name!r}: unknown file type {suffix_of(path) or '(none)'!r}. "
            f"Supported: {_listing(SUPPORTED_READ_SUFFIXES)}; convert the file (e.g. in Fiji: "
            "File > Save As > Tiff) or rename it if the suffix is wrong."
        )
    return fam


def write_family(path: str | Path) -> str:
    fam = family_of(path)
    if fam is None or suffix_of(path) not in SUPPORTED_WRITE_SUFFIXES:
        raise SpatimeINRError(
            f"Cannot write {Path(path).name!r}: unknown output type "
            f"{suffix_of(path) or '(none)'!r}. Choose a name ending in one of "
            f"{_listing(SUPPORTED_WRITE_SUFFIXES)}."
        )
    return fam
