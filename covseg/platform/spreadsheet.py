"""CSV files that open safely in a spreadsheet (OWASP's defence against CSV injection).

A spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` (and, in some, a tab or
carriage return) as a formula, so a team named ``=HYPERLINK(...)`` could act in an organizer's
Excel. Every text cell that starts with one of these characters gets a leading single quote,
which spreadsheets read as "this is text" (OWASP, "CSV Injection"). Numbers are left alone:
``-0.5`` stays ``-0.5``, written as a number, and so does text that reads as a plain number
(a spreadsheet parses it as that number, never as a formula).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

#: First characters that make a spreadsheet evaluate a cell.
RISKY = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf|nan)", re.IGNORECASE)


def safe_cell(value: object) -> object:
    """``value`` itself, or text that would start a formula with a ``'`` before it.

    Examples
    --------
    >>> safe_cell("=1+1"), safe_cell("-0.5"), safe_cell(-0.5), safe_cell("team-a")
    ("'=1+1", '-0.5', -0.5, 'team-a')
    """
    if isinstance(value, str) and value.startswith(RISKY) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def to_csv(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """CSV text of ``header`` and ``rows``, every cell passed through :func:`safe_cell`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([safe_cell(h) for h in header])
    writer.writerows([safe_cell(v) for v in row] for row in rows)
    return buffer.getvalue()


def neutralise_file(path: Path) -> bool:
    """Rewrite a CSV file written elsewhere (pandas) with :func:`safe_cell` applied to every cell.

    Cells are handled as the text they are in the file, so numbers keep their exact digits.
    Returns whether anything changed (an unchanged file is not rewritten).
    """
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    safe = [[str(safe_cell(cell)) for cell in row] for row in rows]
    if safe == rows:
        return False
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerows(safe)
    return True
