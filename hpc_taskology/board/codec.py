"""Byte layout of one board entry (header + payload + tail) and its encoding to/from torch tensors.

One entry is a fixed-size record, all little-endian, 8-byte aligned (numpy structured dtype, see :func:`entry_dtype`)::

    offset  field    type     meaning
    0       seq      int64    write id: ((writer world rank + 1) << 40) | writer's write counter; 0 = never written
    8       step     int64    producer's training step (model version) of the prediction; -1 = never written
    16      time     float64  wall-clock write time, seconds since the epoch (time.time() on the writer)
    24      crc      uint32   zlib.crc32 of the payload bytes
    28      nbytes   uint32   payload bytes actually used (prod(shape) x element size)
    32      payload  uint8[P] the prediction, row-major, in the storage dtype, zero-padded to a multiple of 8 bytes
    32+P    tail     int64    copy of seq, written in the same Put as the header

A reader accepts an entry only if ``seq == tail`` and (when verifying) the payload's crc32 matches the header: a read
that mixed two writes fails one of the two checks (the seq pair differs if the read straddled the ends of the
record, the crc if it straddled the middle).  The lock protocol (see ``board.py``) makes such reads impossible; the
checks prove it in the stress test and guard against a broken MPI setup.

Storage dtypes: ``float32``, ``float16`` (numpy native) and ``bfloat16``, stored as its uint16 bit pattern because
numpy has no bfloat16; conversion goes through torch (``Tensor.to(torch.bfloat16).view(torch.int16)``), which rounds
to nearest even.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

HEADER_BYTES = 32
TAIL_BYTES = 8
STORAGE = {
    # name -> (torch dtype used for rounding, numpy dtype of the stored bits, element bytes)
    "float32": (torch.float32, np.float32, 4),
    "float16": (torch.float16, np.float16, 2),
    "bfloat16": (torch.bfloat16, np.int16, 2),
}


def entry_dtype(payload_bytes: int) -> np.dtype:
    """numpy structured dtype of one entry whose payload has ``payload_bytes`` bytes (padded to 8)."""
    padded = (payload_bytes + 7) // 8 * 8
    return np.dtype([
        ("seq", "<i8"), ("step", "<i8"), ("time", "<f8"), ("crc", "<u4"), ("nbytes", "<u4"),
        ("payload", "u1", (padded,)), ("tail", "<i8"),
    ])


@dataclass(frozen=True)
class EntryCodec:
    """Encode/decode entries for one (task, output) of shape ``shape`` in storage dtype ``dtype``.

    Attributes:
        shape: per-sample prediction shape, e.g. (1, H, W) for depth, (6,) for ego-motion.
        dtype: ``float32``, ``float16`` or ``bfloat16``.
    """

    shape: tuple[int, ...]
    dtype: str

    def __post_init__(self) -> None:
        if self.dtype not in STORAGE:
            raise ValueError(f"board dtype: unknown {self.dtype!r}; choose one of {tuple(STORAGE)}")
        if not self.shape or any(int(d) < 1 for d in self.shape):
            raise ValueError(f"prediction shape must be a non-empty tuple of sizes >= 1, got {self.shape!r}")

    @cached_property
    def numel(self) -> int:
        return int(np.prod(self.shape))

    @cached_property
    def payload_bytes(self) -> int:
        """Bytes of one prediction in the storage dtype (before padding)."""
        return self.numel * STORAGE[self.dtype][2]

    @cached_property
    def np_dtype(self) -> np.dtype:
        """Structured dtype of one entry (see module docstring)."""
        return entry_dtype(self.payload_bytes)

    @cached_property
    def nbytes(self) -> int:
        """Bytes of one entry: header + padded payload + tail."""
        return self.np_dtype.itemsize

    def empty(self, n: int) -> np.ndarray:
        """``n`` never-written entries (seq 0, step -1, time 0, zero payload): shape (n,) of :attr:`np_dtype`."""
        e = np.zeros(n, dtype=self.np_dtype)
        e["step"] = -1
        return e

    def encode(self, preds: torch.Tensor, step: int, time_s: float, seqs: np.ndarray) -> np.ndarray:
        """Entries for ``preds`` of shape (B, *shape) (any float dtype, any device; copied to CPU, which synchronises a
        CUDA stream before MPI touches the data); ``seqs`` int64 (B,) write ids.  Returns (B,) entries with crc32."""
        st, npt, _ = STORAGE[self.dtype]
        t = preds.detach().to(device="cpu", dtype=st).contiguous()
        if self.dtype == "bfloat16":
            t = t.view(torch.int16)
        raw = t.numpy().reshape(len(t), -1).view(np.uint8)  # (B, payload_bytes)
        out = np.zeros(len(t), dtype=self.np_dtype)
        out["seq"] = seqs
        out["tail"] = seqs
        out["step"] = step
        out["time"] = time_s
        out["nbytes"] = self.payload_bytes
        out["payload"][:, : self.payload_bytes] = raw
        out["crc"] = [zlib.crc32(r) for r in raw]
        return out

    def decode(self, entries: np.ndarray) -> np.ndarray:
        """float32 array of shape (B, *shape) from entries (B,) (values of never-written entries are zeros).

        float16 widens exactly (numpy); bfloat16 bits shifted into the high half of a float32 are that float32
        exactly (bfloat16 is float32 truncated to its top 16 bits), so decoding needs no torch.
        """
        raw = entries["payload"][:, : self.payload_bytes]  # (B, payload_bytes), rows strided, bytes contiguous
        if self.dtype == "bfloat16":
            bits = raw.view(np.uint16).astype(np.uint32) << 16
            vals = bits.view(np.float32)
        else:
            vals = raw.view(STORAGE[self.dtype][1]).astype(np.float32)
        return vals.reshape(len(entries), *self.shape)

    def intact(self, entries: np.ndarray, verify_crc: bool = True) -> np.ndarray:
        """bool (B,): the entry is one whole write (``seq == tail``, right ``nbytes`` and, with ``verify_crc``, crc32
        of the payload equal to the header's).  Never-written entries (seq 0) are intact."""
        ok = entries["seq"] == entries["tail"]
        written = entries["seq"] != 0
        ok &= ~written | (entries["nbytes"] == self.payload_bytes)
        if verify_crc:
            for i in np.flatnonzero(ok & written):
                ok[i] = zlib.crc32(entries["payload"][i, : self.payload_bytes]) == entries["crc"][i]
        return ok

    def round_trip(self, x: torch.Tensor) -> torch.Tensor:
        """What the board returns for ``x`` (float32): ``x`` rounded to the storage dtype, as float32."""
        return x.detach().to(STORAGE[self.dtype][0]).to(torch.float32)
