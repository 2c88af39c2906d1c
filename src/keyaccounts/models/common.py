"""Small helpers shared by the model factories."""
from __future__ import annotations

from typing import Any


def merge_params(defaults: dict[str, Any], params: dict | None, what: str) -> dict[str, Any]:
    """defaults updated by params (the nested 'xgb' dict merged key by key); unknown keys fail."""
    params = params or {}
    p = {**defaults, **params}
    if "xgb" in defaults:
        p["xgb"] = {**defaults["xgb"], **(params.get("xgb") or {})}
    unknown = set(p) - set(defaults)
    if unknown:
        raise ValueError(f"unknown {what} parameter(s) {sorted(unknown)}; known: {sorted(defaults)}")
    return p
