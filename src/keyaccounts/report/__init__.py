"""The HTML report for managers and sales ops: one self-contained, printable file.

`build_report(loaded, p, tracker=...)` returns a `Report` whose `html` the caller writes with
`io.write_text`; `tables` holds the summary tables it (and the notebooks) use.
"""
from .build import SECTIONS, Report, build_report

__all__ = ["SECTIONS", "Report", "build_report"]
