"""Input checks shared by the consistency losses: shape, dtype, device, intrinsics.

Follows Kornia ``core/check.py`` (``KORNIA_CHECK_SHAPE``): every error names the argument and prints what was expected
next to what was received, e.g.::

    ValueError: depth: expected shape (B, 1, H, W) = (B, 1, H, W), got (2, 3, 8, 8) (dim 1: expected 1, got 3)

Shape patterns are comma-separated dimension specs:

* a letter or name (``B``, ``H``, ``W``) binds that size; the same name must have the same size across all calls
  that share one ``sizes`` dict (so ``depth`` "B,1,H,W" and ``normals`` "B,3,H,W" must agree on B, H and W);
* an integer (``1``, ``3``) must match exactly;
* ``*`` accepts any size without binding.

All functions raise ``ValueError`` (wrong shape / values) or ``TypeError`` (not a tensor, wrong dtype) and return
nothing useful on success except :func:`check_shape`, which returns the dict of bound sizes.
"""

from __future__ import annotations

from typing import Iterable

import torch

__all__ = [
    "check_tensor",
    "check_shape",
    "check_floating",
    "check_same_device_dtype",
    "check_intrinsics",
    "check_bool_mask",
    "check_positive",
]


def check_tensor(t, name: str) -> None:
    """Raise ``TypeError`` naming ``name`` if ``t`` is not a ``torch.Tensor``."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")


def _parse(pattern: str) -> list[str]:
    dims = [d.strip() for d in pattern.split(",")]
    if not pattern.strip() or any(not d for d in dims):
        raise ValueError(f"bad shape pattern {pattern!r}: expected comma-separated names, integers or '*'")
    return dims


def check_shape(t, name: str, pattern: str, sizes: dict[str, int] | None = None) -> dict[str, int]:
    """Check ``t.shape`` against ``pattern`` (e.g. ``"B,1,H,W"``) and return the bound sizes.

    Args:
        t: the tensor to check.
        name: the argument name used in the error message.
        pattern: comma-separated dims: a name binds a size, an integer must match, ``*`` matches anything.
        sizes: sizes bound by earlier calls (updated in place and returned); pass the same dict to several calls to
            make names agree across arguments. ``None`` starts a fresh dict.

    Returns:
        ``sizes`` with the names of ``pattern`` bound to the sizes of ``t``.

    Raises:
        TypeError: ``t`` is not a tensor.
        ValueError: wrong number of dims, a fixed dim differs, or a name is bound to another size (the message gives
            expected vs actual and, for a name, which earlier binding it conflicts with).
    """
    check_tensor(t, name)
    sizes = {} if sizes is None else sizes
    dims = _parse(pattern)
    shown = "(" + ", ".join(dims) + ")"
    if t.dim() != len(dims):
        raise ValueError(f"{name}: expected shape {shown} ({len(dims)} dims), got {tuple(t.shape)} ({t.dim()} dims)")
    new: dict[str, int] = {}
    for k, (spec, actual) in enumerate(zip(dims, t.shape)):
        actual = int(actual)
        if spec == "*":
            continue
        if spec.lstrip("-").isdigit():
            if actual != int(spec):
                raise ValueError(f"{name}: expected shape {shown}, got {tuple(t.shape)} "
                                 f"(dim {k}: expected {spec}, got {actual})")
            continue
        want = new.get(spec, sizes.get(spec))
        if want is not None and want != actual:
            expected = "(" + ", ".join(str({**sizes, **new}.get(d, d)) for d in dims) + ")"
            raise ValueError(f"{name}: expected shape {shown} = {expected}, got {tuple(t.shape)} "
                             f"(dim {k} '{spec}': expected {want} as bound by an earlier argument, got {actual})")
        new[spec] = actual
    sizes.update(new)
    return sizes


def check_floating(t, name: str, dtypes: Iterable[torch.dtype] | None = None) -> None:
    """Raise ``TypeError`` unless ``t`` is a floating tensor (optionally one of ``dtypes``)."""
    check_tensor(t, name)
    if dtypes is not None:
        dtypes = tuple(dtypes)
        if t.dtype not in dtypes:
            raise TypeError(f"{name}: expected dtype in {[str(d) for d in dtypes]}, got {t.dtype}")
    elif not t.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point dtype, got {t.dtype}")


def check_same_device_dtype(*named: tuple[str, torch.Tensor], dtype: bool = True) -> None:
    """All ``(name, tensor)`` pairs must live on one device (and, with ``dtype``, share one dtype).

    Example: ``check_same_device_dtype(("depth", depth), ("normals", normals), ("K", K))``.

    Raises:
        ValueError: devices differ (message lists every argument's device).
        TypeError: dtypes differ (message lists every argument's dtype).
    """
    if not named:
        return
    for name, t in named:
        check_tensor(t, name)
    devices = {str(t.device) for _, t in named}
    if len(devices) > 1:
        listing = ", ".join(f"{n}={t.device}" for n, t in named)
        raise ValueError(f"expected all on one device, got {listing}")
    if dtype:
        dtypes = {t.dtype for _, t in named}
        if len(dtypes) > 1:
            listing = ", ".join(f"{n}={t.dtype}" for n, t in named)
            raise TypeError(f"expected one dtype, got {listing}")


def check_bool_mask(t, name: str, pattern: str, sizes: dict[str, int] | None = None) -> dict[str, int]:
    """A ``torch.bool`` tensor of shape ``pattern`` (see :func:`check_shape`); returns the bound sizes."""
    sizes = check_shape(t, name, pattern, sizes)
    if t.dtype != torch.bool:
        raise TypeError(f"{name}: expected dtype torch.bool, got {t.dtype}")
    return sizes


def check_positive(value, name: str, *, integer: bool = False, odd: bool = False) -> None:
    """A finite scalar hyperparameter > 0 (optionally an odd integer, e.g. a window size)."""
    if integer:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name}: expected an int, got {type(value).__name__} ({value!r})")
        if value < 1 or (odd and value % 2 == 0):
            raise ValueError(f"{name}: expected a{'n odd' if odd else ''} positive int, got {value}")
        return
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__} ({value!r})") from None
    if not (v > 0 and v < float("inf")):
        raise ValueError(f"{name}: expected a finite number > 0, got {value}")


def check_intrinsics(K, name: str = "K", sizes: dict[str, int] | None = None) -> dict[str, int]:
    """Pinhole intrinsics ``K`` with shape (B, 3, 3), pixels: finite entries, fx = K[:, 0, 0] > 0, fy = K[:, 1, 1] > 0.

    Only the upper-triangular pinhole entries are used by the losses (fx, fy, cx = K[:, 0, 2], cy = K[:, 1, 2]);
    skew is not supported by them and is not checked here.  Binds ``B`` in ``sizes``.

    Raises:
        TypeError: not a floating tensor.
        ValueError: wrong shape, non-finite entries, or fx/fy <= 0 (the message gives the offending batch index).
    """
    sizes = check_shape(K, name, "B,3,3", sizes)
    check_floating(K, name)
    Kd = K.detach()
    finite = torch.isfinite(Kd).flatten(1).all(1)
    if not bool(finite.all()):
        b = int((~finite).nonzero()[0])
        raise ValueError(f"{name}: expected finite intrinsics, got non-finite entries in batch {b}: {Kd[b].tolist()}")
    f = torch.stack([Kd[:, 0, 0], Kd[:, 1, 1]], 1)
    bad = (f <= 0).any(1)
    if bool(bad.any()):
        b = int(bad.nonzero()[0])
        raise ValueError(f"{name}: expected focal lengths fx = {name}[:, 0, 0] > 0 and fy = {name}[:, 1, 1] > 0 "
                         f"(pixels), got fx={float(f[b, 0])}, fy={float(f[b, 1])} in batch {b}")
    return sizes
