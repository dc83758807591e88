"""Turn analyzer records (numpy scalars/arrays, tuples, NaN) into plain JSON values."""

from __future__ import annotations

import math
from typing import Any


def to_jsonable(value: Any) -> Any:
    """A copy of ``value`` made of dict/list/str/int/float/bool/None only; NaN/inf become None."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    item = getattr(value, "tolist", None)  # numpy scalar or array
    if callable(item):
        return to_jsonable(item())
    return str(value)
