"""Render the report context to one self-contained HTML page (Jinja2, autoescape on).

Everything is inline: CSS in a <style> element, charts as data: URIs. There is no script, and
a Content-Security-Policy meta tag forbids loading anything but inline styles and data: images,
so the file renders offline and cannot reach the network even if a value were not escaped.
"""
from __future__ import annotations

import math
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

TEMPLATES = Path(__file__).parent / "templates"


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def money(v, digits: int = 0) -> str:
    """12,345 (thousands separators, no currency symbol: the data's currency is unknown)."""
    return "-" if _missing(v) else f"{float(v):,.{digits}f}"


def pct(v, digits: int = 0) -> str:
    return "-" if _missing(v) else f"{float(v) * 100:.{digits}f} %"


def num(v, digits: int = 3) -> str:
    return "-" if _missing(v) else f"{float(v):.{digits}f}"


def text(v) -> str:
    return "-" if _missing(v) or v == "" else str(v)


def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(money=money, pct=pct, num=num, text=text)
    return env


def slug(title: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in title.lower()).strip("-")


def render(context: dict) -> str:
    """The report page for a context from `build.build_report`."""
    env = environment()
    env.filters["slug"] = slug
    return env.get_template("report.html.j2").render(**context)
