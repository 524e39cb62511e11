"""`--relabel FILE.csv` and `--exclude FILE`: label fixes applied to the data in memory after
it is split, never to the files on disk.

Items are named as `imgcls data labels` names them (`item_name`): the path relative to the
data for folders and CSVs, `#<index>` for a built-in set's training images (`#17` for
digits/17, `#123` for fashion-mnist/train/123); the data set's own ids are accepted too.
A relabel file has an item column (`path` or `item`) and a `label` column (or `suggested`, so
label_issues.csv itself works); an exclude file is a CSV with an item column (label_issues.csv
gives the rows whose `is_issue` is 1) or a text file with one item a line. Every bad row (an
unknown item or class, an item named twice, an empty cell) is a UserError naming the file
and its line.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from imgcls.data.builtin import builtin_name
from imgcls.data.imageset import ImageSet
from imgcls.errors import UserError

ITEM_COLUMNS = ("path", "item")
LABEL_COLUMNS = ("label", "suggested")


@dataclass(frozen=True)
class LabelFixes:
    relabel: dict[int, int]  # item index -> new class index (only items whose label changes)
    exclude: frozenset[int]  # item indices left out of every split
    record: dict  # what the run applied, for config.yaml's neighbour and the model card

    def apply(self, image_set: ImageSet) -> None:
        """New labels in place (the ImageSet is this run's own copy in memory)."""
        if self.relabel:
            image_set.labels = self.labels(image_set)

    def labels(self, image_set: ImageSet) -> torch.Tensor:
        """The labels with the relabels applied, leaving `image_set` as it is."""
        labels = image_set.labels.clone()
        for index, label in self.relabel.items():
            labels[index] = label
        return labels

    def kept(self, indices: np.ndarray) -> np.ndarray:
        if not self.exclude:
            return indices
        return indices[~np.isin(indices, np.fromiter(self.exclude, dtype=np.int64))]


def item_name(item_id: str, builtin: bool) -> str:
    """What label_issues.csv and relabel files call an item."""
    if not builtin:
        return item_id
    parts = item_id.split("/")
    return f"#{parts[-1]}" if len(parts) == 2 or parts[1] == "train" else item_id


def item_names(image_set: ImageSet) -> list[str]:
    """item_name of every item (a built-in set is one whose source is a built-in name)."""
    builtin = builtin_name(image_set.source) is not None
    return [item_name(item, builtin) for item in image_set.item_ids]


def read_fixes(image_set: ImageSet, *, relabel: str | None, exclude: str | None) -> LabelFixes:
    index = _item_index(image_set)
    changes: dict[int, int] = {}
    record: dict = {}
    if relabel:
        changes = _read_relabel(Path(relabel), index, image_set)
        record["relabel"] = {"file": str(relabel), "sha256": _sha256(Path(relabel)),
                             "relabeled": len(changes)}
    left_out: frozenset[int] = frozenset()
    if exclude:
        left_out = _read_exclude(Path(exclude), index)
        record["exclude"] = {"file": str(exclude), "sha256": _sha256(Path(exclude)),
                             "excluded": len(left_out)}
    return LabelFixes(changes, left_out, record)


def _item_index(image_set: ImageSet) -> dict[str, int]:
    """Item -> position, under the data set's own ids and the names item_names gives."""
    index = {item: position for position, item in enumerate(image_set.item_ids)}
    for position, name in enumerate(item_names(image_set)):
        index.setdefault(name, position)
    return index


def _read_relabel(path: Path, index: dict[str, int], image_set: ImageSet) -> dict[int, int]:
    classes = {name: number for number, name in enumerate(image_set.class_names)}
    changes: dict[int, int] = {}
    for line, item, row in _rows(path, "--relabel", index, need_label=True):
        label = row[1]
        if label not in classes:
            raise UserError(f"--relabel {path} line {line}: unknown class {label!r}; the "
                            f"classes are {', '.join(image_set.class_names)}")
        if classes[label] != int(image_set.labels[item]):
            changes[item] = classes[label]
    return changes


def _read_exclude(path: Path, index: dict[str, int]) -> frozenset[int]:
    return frozenset(item for _, item, _ in _rows(path, "--exclude", index, need_label=False))


def _rows(path: Path, flag: str, index: dict[str, int], *, need_label: bool):
    """(line number, item index, [item, label]) per row that applies, checked."""
    header, rows = _read_table(path, flag)
    columns = _columns(header, path, flag, need_label)
    seen: dict[int, int] = {}
    for line, row in rows:
        if columns.issue is not None and _cell(row, columns.issue) != "1":
            continue
        name = _cell(row, columns.item)
        label = _cell(row, columns.label) if columns.label is not None else ""
        if not name or (need_label and not label):
            raise UserError(f"{flag} {path} line {line}: an empty "
                            f"{'item' if not name else 'label'}")
        if name not in index:
            raise UserError(f"{flag} {path} line {line}: unknown item {name!r} (not in the "
                            "data set; items are paths relative to the data, or #<index> "
                            "for a built-in set)")
        item = index[name]
        if item in seen:
            raise UserError(f"{flag} {path} line {line}: item {name!r} is named again (first "
                            f"on line {seen[item]})")
        seen[item] = line
        yield line, item, [name, label]


@dataclass(frozen=True)
class _Columns:
    item: int
    label: int | None
    issue: int | None  # label_issues.csv's is_issue: only the flagged rows count


def _columns(header: list[str] | None, path: Path, flag: str, need_label: bool) -> _Columns:
    if header is None:  # a text file: one item a line
        if need_label:
            raise UserError(f"{flag} {path}: needs a header with an item column (path or "
                            "item) and a label column")
        return _Columns(0, None, None)
    names = [name.strip().lower() for name in header]
    item = next((names.index(name) for name in ITEM_COLUMNS if name in names), None)
    label = next((names.index(name) for name in LABEL_COLUMNS if name in names), None)
    if item is None or (need_label and label is None):
        wanted = "an item column (path or item)" + (" and a label column" if need_label else "")
        raise UserError(f"{flag} {path}: its header {header} lacks {wanted}")
    issue = names.index("is_issue") if "is_issue" in names and not need_label else None
    return _Columns(item, label if need_label else None, issue)


def _read_table(path: Path, flag: str) -> tuple[list[str] | None, list[tuple[int, list[str]]]]:
    if not path.is_file():
        raise UserError(f"{flag} {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{flag} {path} cannot be read as text ({error})") from None
    lines = list(csv.reader(text.splitlines()))
    numbered = [(number, row) for number, row in enumerate(lines, start=1)
                if any(cell.strip() for cell in row)]
    if not numbered:
        raise UserError(f"{flag} {path} is empty")
    first = [cell.strip().lower() for cell in numbered[0][1]]
    if path.suffix.lower() == ".csv" or set(first) & {*ITEM_COLUMNS, *LABEL_COLUMNS}:
        return numbered[0][1], numbered[1:]
    return None, numbered


def _cell(row: list[str], column: int) -> str:
    return row[column].strip() if column < len(row) else ""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()

