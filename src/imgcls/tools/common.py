"""What lr-find, compare and tune share: the model-list check, the one-line reason of a
failure, and the CSV and chart writers."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgcls.errors import UserError
from imgcls.utils.csv_safe import safe_values
from imgcls.utils.files import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

def check_model_names(names: Sequence[str], flag: str, *, allow_auto: bool = False) -> None:
    """An empty list, a repeated name or an unknown one is a UserError now, not after hours
    of training the models before it."""
    from imgcls.models import get_spec
    from imgcls.training.auto_model import AUTO  # each run picks its network from the data

    if not names:
        raise UserError(f"{flag} is empty; pass e.g. {flag} lenet5,resnet18")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise UserError(f"{flag} names {', '.join(repeated)} more than once")
    for name in names:
        if not (allow_auto and name == AUTO):
            get_spec(name)  # an unknown name: a UserError with the closest known one


def first_line(error: BaseException | None, default: str) -> str:
    """An error's message, first line only, for a table cell or a log line."""
    text = str(error).strip() if error is not None else ""
    return text.splitlines()[0] if text else default


def csv_text(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    """A CSV with a header; no cell is text a spreadsheet would run as a formula."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow(safe_values(row))
    return buffer.getvalue()


def new_figure() -> Figure:
    """One chart of the tools' size. A bare Figure renders with Agg and never touches
    pyplot's global backend, so a notebook or GUI user's own backend is left alone."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5), layout="constrained")
    figure.add_subplot()
    return figure


def save_figure(figure: Figure, path: Path) -> None:
    """Write the PNG whole or not at all (several tune workers may write it at once)."""
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=100, format="png")
