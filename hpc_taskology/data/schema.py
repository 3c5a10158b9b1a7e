"""The HDF5 schema every packer and the simulator write, and the checks every reader applies.

One file per split, one row per sample, chunked per sample (a reader touching sample i decompresses only sample i),
compressed with an hdf5plugin filter (Blosc/LZ4/Zstd) or gzip.  The full description, with units and conventions,
is ``datasets/README.md``; this module is its executable form.  Built on h5py and hdf5plugin.

Required datasets (N samples, H×W pixels, fixed per file):

=================  ================  ==========  =====================================================================
name               shape             dtype       meaning
=================  ================  ==========  =====================================================================
``rgb``            (N, H, W, 3)      uint8       colour image, sRGB
``depth``          (N, H, W)         float32     z-depth in metres along the optical axis; 0 where not valid
``valid``          (N, H, W)         bool        depth measured / defined at this pixel
``K``              (N, 3, 3)         float64     pinhole intrinsics in pixels, pixel centres at integer coordinates
``cam_to_world``   (N, 4, 4)         float64     camera-to-world pose (OpenCV camera axes); NaN where unknown
``pose_valid``     (N,)              bool        ``cam_to_world`` is known
``frame_id``       (N,)              int64       frame number within its sequence
``sequence``       (N,)              str         sequence name (e.g. ``2011_09_26_drive_0023_sync``)
``timestamp``      (N,)              float64     seconds (sensor clock of the source)
=================  ================  ==========  =====================================================================

Optional datasets (written when the source has them): ``normals`` (N,H,W,3) float32 unit vectors in the camera frame
facing the camera, zero where unknown; ``segmentation`` (N,H,W) int16 class ids (-1 = unlabelled);
``instance`` (N,H,W) int32; ``object_motion`` (N,H,W,3) float32 metres, 3-D motion of the point at each pixel to
the next frame, in this frame's camera coordinates; ``movable`` (N,H,W) bool; ``rgb_right`` (N,H,W,3) uint8 and
``disparity`` (N,H,W) float32 pixels (0 = none) and ``baseline`` (N,) float64 metres for rectified stereo pairs.

Root attributes: ``schema`` (``SCHEMA_VERSION``), ``source``, ``licence``, ``units``, ``conventions``, ``height``,
``width`` and anything the packer adds.

Camera frame: x right, y down, z forward (OpenCV).  Pixel (row i, column j) has its centre at (x=j, y=i).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import h5py
import numpy as np

SCHEMA_VERSION = "hpc_taskology/1"

CONVENTIONS = (
    "camera frame x right, y down, z forward (OpenCV); pixel (i, j) centre at x=j, y=i; K in pixels; "
    "cam_to_world maps camera coordinates to world coordinates; depth = z along the optical axis in metres, "
    "0 where valid is false; normals are unit vectors in the camera frame facing the camera"
)
UNITS = "depth: m; cam_to_world translation: m; K: px; disparity: px; baseline: m; timestamp: s; object_motion: m"


@dataclass(frozen=True)
class Field:
    """One per-sample dataset: per-sample shape (with H, W symbolic), dtype, and fill value for 'unknown'."""

    shape: tuple
    dtype: object
    fill: object = 0


REQUIRED: dict[str, Field] = {
    "rgb": Field(("H", "W", 3), np.uint8),
    "depth": Field(("H", "W"), np.float32),
    "valid": Field(("H", "W"), np.bool_),
    "K": Field((3, 3), np.float64),
    "cam_to_world": Field((4, 4), np.float64, np.nan),
    "pose_valid": Field((), np.bool_),
    "frame_id": Field((), np.int64),
    "sequence": Field((), h5py.string_dtype("utf-8"), ""),
    "timestamp": Field((), np.float64, np.nan),
}

OPTIONAL: dict[str, Field] = {
    "normals": Field(("H", "W", 3), np.float32),
    "segmentation": Field(("H", "W"), np.int16, -1),
    "instance": Field(("H", "W"), np.int32),
    "object_motion": Field(("H", "W", 3), np.float32),
    "movable": Field(("H", "W"), np.bool_),
    "rgb_right": Field(("H", "W", 3), np.uint8),
    "disparity": Field(("H", "W"), np.float32),
    "baseline": Field((), np.float64, np.nan),
}

COMPRESSIONS = ("lz4", "zstd", "blosc", "gzip", "none")


class SchemaError(ValueError):
    """A packed file, or a sample given to the writer, does not follow the schema; the message names file and key."""


def compression_kwargs(name: str) -> dict:
    """h5py ``create_dataset`` keyword arguments for a compression name in :data:`COMPRESSIONS`.

    ``lz4``/``zstd``/``blosc`` use hdf5plugin's filters (readers need ``import hdf5plugin``, which
    :func:`open_packed` does); ``gzip`` is HDF5's built-in deflate (readable everywhere).
    """
    if name in ("lz4", "zstd", "blosc"):
        import hdf5plugin

        return dict({"lz4": hdf5plugin.LZ4(), "zstd": hdf5plugin.Zstd(clevel=3),
                     "blosc": hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE)}[name])
    if name == "gzip":
        return {"compression": "gzip", "compression_opts": 4, "shuffle": True}
    if name == "none":
        return {}
    raise SchemaError(f"compression {name!r} unknown; choose one of {COMPRESSIONS}")


def _concrete(shape: tuple, height: int, width: int) -> tuple:
    return tuple(height if s == "H" else width if s == "W" else s for s in shape)


class H5Writer:
    """Append samples to a packed HDF5 file, written under a temporary name and renamed when closed cleanly.

    A failed run (an exception inside the ``with`` block, or a crash) never leaves a half-written file under the
    final name, and never touches an existing file of that name until the new one is complete.

    ``optional`` names the optional datasets this file carries (each appended sample must then have them).
    ``attrs`` adds root attributes (``source`` and ``licence`` are required: keep the data's licence with it).

    Raises :class:`SchemaError` when a sample lacks a key or has a wrong shape or dtype (the message names the
    key, the sample index and the output file).
    """

    def __init__(self, path: str | os.PathLike, height: int, width: int, *, source: str, licence: str,
                 optional: Iterable[str] = (), compression: str = "lz4", attrs: dict | None = None):
        self.path = Path(path)
        self.height, self.width = int(height), int(width)
        unknown = set(optional) - set(OPTIONAL)
        if unknown:
            raise SchemaError(f"{self.path}: unknown optional dataset(s) {sorted(unknown)}; known: {sorted(OPTIONAL)}")
        if not source or not licence:
            raise SchemaError(f"{self.path}: 'source' and 'licence' attributes are required")
        self.fields = {**REQUIRED, **{k: OPTIONAL[k] for k in optional}}
        self.tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = h5py.File(self.tmp, "w")
        self._n = 0
        comp = compression_kwargs(compression)
        for name, fld in self.fields.items():
            shape = _concrete(fld.shape, self.height, self.width)
            big = len(shape) >= 2
            self._f.create_dataset(
                name, shape=(0, *shape), maxshape=(None, *shape), dtype=fld.dtype,
                chunks=(1, *shape) if big else (1024,), **(comp if big else {}),
            )
        root = self._f.attrs
        root.update({"schema": SCHEMA_VERSION, "source": source, "licence": licence, "units": UNITS,
                     "conventions": CONVENTIONS, "height": self.height, "width": self.width,
                     "compression": compression})
        for k, v in (attrs or {}).items():
            root[k] = v if isinstance(v, (str, int, float, np.ndarray)) else json.dumps(v)

    def __len__(self) -> int:
        return self._n

    def append(self, sample: dict) -> None:
        """Append one sample: a dict with every required key and this file's optional keys (numpy arrays/scalars)."""
        i = self._n
        rows = {}
        for name, fld in self.fields.items():
            if name not in sample:
                raise SchemaError(f"{self.path}: sample {i} lacks key {name!r}")
            value = sample[name]
            if name == "sequence":
                rows[name] = str(value)
                continue
            arr = np.asarray(value)
            want = _concrete(fld.shape, self.height, self.width)
            if arr.shape != want:
                raise SchemaError(f"{self.path}: sample {i} key {name!r} has shape {arr.shape}, expected {want}")
            if np.dtype(fld.dtype).kind in "ui" and arr.dtype.kind == "f":
                raise SchemaError(f"{self.path}: sample {i} key {name!r} is {arr.dtype}, expected {np.dtype(fld.dtype)}")
            rows[name] = arr.astype(fld.dtype, copy=False)
        for name, value in rows.items():
            ds = self._f[name]
            ds.resize(i + 1, axis=0)
            ds[i] = value
        self._n += 1

    def append_packed(self, src: str | os.PathLike) -> int:
        """Append every sample of another packed file written with this file's layout (same datasets, size, dtypes).

        Used to merge the part files of a parallel packing run.  Per-sample chunks are copied as stored
        (``read_direct_chunk``/``write_direct_chunk``: no decompression, bit-identical data) when both files use
        the same filters; otherwise rows are decoded and re-encoded.  Returns the number of samples appended.
        Raises :class:`SchemaError` naming both files if a dataset is missing or has another shape or dtype.
        """
        i0 = self._n
        with h5py.File(src, "r") as f:
            n = f["rgb"].shape[0] if "rgb" in f else 0
            for name in self.fields:
                if name not in f:
                    raise SchemaError(f"{src}: dataset {name!r} missing, cannot append to {self.path}")
                sd, dd = f[name], self._f[name]
                if sd.shape[1:] != dd.shape[1:] or sd.dtype != dd.dtype or sd.shape[0] != n:
                    raise SchemaError(f"{src}: dataset {name!r} is {sd.dtype} {sd.shape}, {self.path} expects "
                                      f"{dd.dtype} (N, {', '.join(map(str, dd.shape[1:]))}) with N = {n}")
            for name in self.fields:
                sd, dd = f[name], self._f[name]
                dd.resize(i0 + n, axis=0)
                if sd.chunks is not None and sd.chunks == dd.chunks and sd.chunks[0] == 1 and \
                        _filters(sd) == _filters(dd):
                    zeros = (0,) * (sd.ndim - 1)
                    for i in range(n):
                        mask, data = sd.id.read_direct_chunk((i, *zeros))
                        dd.id.write_direct_chunk((i0 + i, *zeros), data, filter_mask=mask)
                elif n:
                    dd[i0:i0 + n] = sd[:]
        self._n += n
        return n

    def close(self) -> Path:
        """Finish the file and rename it to its final name (atomic on POSIX file systems).  Returns the path."""
        if self._f is None:
            return self.path
        self._f.attrs["num_samples"] = self._n
        self._f.close()
        self._f = None
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop the temporary file; the final name is left as it was."""
        if self._f is not None:
            self._f.close()
            self._f = None
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> "H5Writer":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _filters(ds: h5py.Dataset) -> tuple:
    """The filter pipeline of a chunked dataset as comparable tuples (id, flags, parameters)."""
    plist = ds.id.get_create_plist()
    return tuple(plist.get_filter(k)[:3] for k in range(plist.get_nfilters()))


def open_packed(path: str | os.PathLike, require: Iterable[str] = ()) -> h5py.File:
    """Open a packed file read-only after checking it follows the schema.

    ``require`` lists optional datasets the caller needs (e.g. ``("normals",)``).  Raises ``FileNotFoundError``
    for a missing file and :class:`SchemaError` for a corrupt or truncated file, a wrong schema version, a missing
    dataset or inconsistent lengths — each message names the file and the key.
    """
    import hdf5plugin  # noqa: F401  registers the Blosc/LZ4/Zstd filters with HDF5

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"packed file {path} does not exist")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise SchemaError(f"{path}: not a readable HDF5 file (corrupt or truncated?): {e}") from None
    try:
        version = f.attrs.get("schema")
        if version != SCHEMA_VERSION:
            raise SchemaError(f"{path}: attribute 'schema' is {version!r}, expected {SCHEMA_VERSION!r}")
        n = None
        for name in list(REQUIRED) + list(require):
            if name not in f:
                raise SchemaError(f"{path}: dataset {name!r} is missing")
            if n is None:
                n = f[name].shape[0]
            elif f[name].shape[0] != n:
                raise SchemaError(f"{path}: dataset {name!r} has {f[name].shape[0]} rows, 'rgb' has {n}")
    except Exception:
        f.close()
        raise
    return f


def read_sample(f: h5py.File, i: int, keys: Iterable[str] | None = None) -> dict:
    """Read sample ``i`` of an open packed file as numpy arrays (``sequence`` as ``str``).

    Raises :class:`SchemaError` naming the file, key and index if a chunk cannot be read (corrupt data).
    """
    out = {}
    for name in keys if keys is not None else [k for k in f.keys() if isinstance(f[k], h5py.Dataset)]:
        try:
            value = f[name][i]
        except (OSError, ValueError) as e:
            raise SchemaError(f"{f.filename}: cannot read {name!r}[{i}] (corrupt chunk?): {e}") from None
        out[name] = value.decode() if isinstance(value, bytes) else value
    return out
