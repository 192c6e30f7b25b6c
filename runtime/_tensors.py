"""Numeric request data to tensors: dtype, range and shape checks that never change a number silently."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from onnxfn._wire import onnx_numpy_dtype as numpy_dtype

from ._errors import BadRequest, PayloadTooLarge

__all__ = ["check_batch", "check_shape", "check_tensor", "numpy_dtype", "to_array"]


def to_array(value: Any, *, name: str, dtype: Any) -> np.ndarray:
    """Nested lists (or an array) as ``dtype``, refusing what would silently change the numbers.

    BadRequest for ragged or non-numeric data, NaN/inf, fractions or out-of-range values for an integer
    type, values that overflow a float type, and non-boolean data for BOOL.
    """
    target = np.dtype(dtype)
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"input {name!r}: not a rectangular numeric array ({exc})") from None
    if target == np.object_:
        if array.dtype.kind not in "OUS" or not all(isinstance(v, str) for v in array.reshape(-1)):
            raise BadRequest(f"input {name!r} holds strings: send text")
        return array.astype(np.object_)
    if array.dtype == np.object_ or array.dtype.kind in "USV":
        raise BadRequest(f"input {name!r}: expected numbers, got {array.dtype.kind!r} data (ragged or text?)")
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise BadRequest(f"input {name!r} contains NaN or infinity: send finite numbers")
    if target.kind == "b":
        if array.dtype.kind != "b":
            raise BadRequest(f"input {name!r} is boolean: send true/false")
        return array
    if target.kind in "iu":
        info = np.iinfo(target)
        out_of_range = BadRequest(
            f"input {name!r}: values outside {target.name}'s range [{info.min}, {info.max}]"
        )
        if array.dtype.kind == "f":
            if not np.all(np.mod(array, 1) == 0):
                raise BadRequest(f"input {name!r} expects integers ({target.name}), got fractions")
            if array.size and (array.min() < float(info.min) or array.max() > float(info.max)):
                raise out_of_range
            # Python ints beyond 2**53 were rounded on the way to float64: convert the originals exactly.
            try:
                return np.array(value, dtype=target)
            except (OverflowError, ValueError, TypeError):
                raise out_of_range from None
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise out_of_range
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is detected just below
        out = array.astype(target, copy=False)
    if target.kind == "f" and array.dtype.kind in "iuf" and not np.all(np.isfinite(out)):
        raise BadRequest(f"input {name!r}: values overflow {target.name}")
    return out


def check_tensor(value: Any, *, name: str, dtype: Any, shape: Sequence[int | str | None]) -> np.ndarray:
    """A numpy array from nested lists (or an array), checked against the input's dtype and shape."""
    array = to_array(value, name=name, dtype=dtype)
    check_shape(array.shape, shape, name=name)
    return array


def check_shape(actual: Sequence[int], expected: Sequence[int | str | None], *, name: str) -> None:
    """Raise BadRequest unless ``actual`` fits ``expected`` (str/None/-1 dims are dynamic)."""
    ok = len(actual) == len(expected) and all(
        not isinstance(e, int) or e < 0 or e == a for a, e in zip(actual, expected, strict=False)
    )
    if not ok:
        shown = ["-1" if not isinstance(e, int) or e < 0 else str(e) for e in expected]
        raise BadRequest(
            f"input {name!r} has shape {list(actual)}, expected [{', '.join(shown)}] (-1 = any size)"
        )


def check_batch(count: int, limit: int) -> None:
    """Raise PayloadTooLarge when a request carries more instances than ``limit``."""
    if count > limit:
        raise PayloadTooLarge(
            f"{count} instances in one request, above the limit of {limit} (ONNXFN_MAX_BATCH): "
            "split the batch (Client.predict_batch does)"
        )
    if count == 0:
        raise BadRequest("no instances: send at least one")
