"""JSON that every parser reads: no NaN or infinite numbers, which Python writes and JSON lacks."""

from __future__ import annotations

import math


def strict_json(value):
    """``value`` with every NaN or infinite float as None, tuples as lists.

    JSON has no such numbers, and strict parsers (jq, JavaScript's JSON.parse) refuse Python's ``NaN``.

    Examples:
        >>> strict_json({"prob": float("nan"), "n": [1.0, float("inf")], "ok": True})
        {'prob': None, 'n': [1.0, None], 'ok': True}
        >>> strict_json((0.5, float("-inf")))
        [0.5, None]
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    return value


__all__ = ["strict_json"]
