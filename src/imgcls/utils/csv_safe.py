"""CSV cells a spreadsheet will not run as formulas.

Excel, LibreOffice and Google Sheets treat a cell that starts with =, +, -, @, a tab or a
carriage return as a formula (OWASP: CSV injection), and a class name or file name in a
CSV that imgcls writes could start so. Such text gets a leading single quote, which the
spreadsheet shows as text. Numbers stay numbers: only strings are escaped, and a string
that reads as a number (-0.5, +1e-3, -inf) is left as it is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|inf|nan)",
                     re.IGNORECASE)


def safe_cell(value: Any) -> Any:
    """`value`, with a leading ' when it is text a spreadsheet would run as a formula."""
    if not isinstance(value, str) or not value.startswith(FORMULA_STARTS):
        return value
    if _NUMBER.fullmatch(value):
        return value
    return "'" + value


def safe_row(values: Iterable[Any]) -> list[Any]:
    """A csv.writer row with every cell through safe_cell."""
    return [safe_cell(value) for value in values]


def safe_values(row: Mapping[str, Any]) -> dict[str, Any]:
    """A csv.DictWriter row with every value through safe_cell."""
    return {key: safe_cell(value) for key, value in row.items()}
