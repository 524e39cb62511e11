"""Stratified, seeded train/val/test split, and its JSON form (runs/<name>/split.json).

The splitter carves only what the source doesn't split itself: no preset -> test, then val,
out of everything; a preset with train and test (Fashion-MNIST, CIFAR-10) -> val out of
train; a preset with all three -> used as given. `val` and `test` are fractions of the
pool they are carved from.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from imgcls.data.imageset import SPLIT_NAMES, ImageSet
from imgcls.errors import UserError

_NO_ITEMS = np.zeros(0, dtype=np.int64)


@dataclass(eq=False)  # arrays don't compare to one bool
class Split:
    train: np.ndarray  # int64 indices into the ImageSet, sorted
    val: np.ndarray
    test: np.ndarray
    seed: int
    val_fraction: float
    test_fraction: float
    # sha256 over the item ids and labels of each split: a changed data set or split shows
    content_hash: str

    def to_json(self, image_set: ImageSet) -> dict:
        ids = image_set.item_ids
        return {
            "seed": self.seed,
            "val_fraction": self.val_fraction,
            "test_fraction": self.test_fraction,
            "content_hash": self.content_hash,
            **{name: [ids[i] for i in getattr(self, name)] for name in SPLIT_NAMES},
        }


def make_split(
    labels: np.ndarray | torch.Tensor,
    *,
    preset: list[str] | None,
    val: float = 0.1,
    test: float = 0.1,
    seed: int = 0,
    item_ids: Sequence[str],
    groups: np.ndarray | None = None,
) -> Split:
    """Split item indices into train/val/test, stratified by label; same seed, same split.

    Classes with a single item in the pool, which can't be stratified, stay in train; when
    a fraction is too small to hold every class, that carve falls back to an unstratified
    one. Fractions may be 0 (an empty part). With `groups` (one key per item), items that
    share a key always land in the same part; the fractions are then approximate.
    """
    _check_fractions(val, test)
    labels = _as_numpy(labels)
    if len(item_ids) != len(labels):
        raise ValueError(f"{len(labels)} labels but {len(item_ids)} item ids")
    parts = _preset_parts(preset, len(labels))
    if preset is not None and len(parts["train"]) == 0:
        raise UserError("the data source's own split has no train items; add a train/ folder "
                        "or rows with split=train")
    # One RandomState for both carves: deterministic, without reusing the same shuffle.
    rng = np.random.RandomState(seed)
    carve_test = len(parts["test"]) == 0
    carve = _carve if groups is None else _group_carver(np.asarray(groups))
    if carve_test:
        parts["train"], parts["test"] = carve(parts["train"], labels, test, rng)
    if len(parts["val"]) == 0:
        # Relative to the pool before the test carve, so no preset gives 80/10/10.
        fraction = val / (1.0 - test) if carve_test else val
        parts["train"], parts["val"] = carve(parts["train"], labels, fraction, rng)
    return Split(
        **parts, seed=seed, val_fraction=val, test_fraction=test,
        content_hash=_content_hash(parts, labels, item_ids),
    )


def split_image_set(
    image_set: ImageSet, *, val: float, test: float, seed: int, group_by: str | None = None
) -> Split:
    """make_split over a data set, with `group_by` (a file-name regex) keeping groups whole:
    the one way training, evaluation and `imgcls data split` split a source."""
    groups = groups_from_pattern(image_set.item_ids, group_by) if group_by else None
    return make_split(image_set.labels, preset=image_set.preset_split, val=val, test=test,
                      seed=seed, item_ids=image_set.item_ids, groups=groups)


def split_from_parts(parts: dict[str, np.ndarray], image_set: ImageSet, *, seed: int) -> Split:
    """A Split of given index arrays (`imgcls data labels` makes one per fold)."""
    parts = {name: np.sort(np.asarray(parts.get(name, _NO_ITEMS), dtype=np.int64))
             for name in SPLIT_NAMES}
    total = sum(len(part) for part in parts.values()) or 1
    return Split(**parts, seed=seed, val_fraction=len(parts["val"]) / total,
                 test_fraction=len(parts["test"]) / total,
                 content_hash=_content_hash(parts, _as_numpy(image_set.labels),
                                            image_set.item_ids))


def split_from_json(doc: dict, image_set: ImageSet) -> Split:
    """The Split a split.json describes, as indices into `image_set`.

    Raises UserError when items of the saved split are missing from the data set or any
    label changed since (the content hash differs).
    """
    keys = ("seed", "val_fraction", "test_fraction", "content_hash", *SPLIT_NAMES)
    absent = [key for key in keys if key not in doc]
    if absent:
        raise UserError(f"the saved split lacks {', '.join(absent)}; it is not an imgcls "
                        f"split.json or is damaged: delete it to split again")
    index_of = {item: i for i, item in enumerate(image_set.item_ids)}
    missing = [item for name in SPLIT_NAMES for item in doc[name] if item not in index_of]
    if missing:
        raise UserError(f"{len(missing)} items of the saved split are not in "
                        f"{image_set.source} (first: {missing[0]!r}); the data set changed "
                        f"since the split was made: restore those files or split again")
    parts = {name: np.array(sorted(index_of[item] for item in doc[name]), dtype=np.int64)
             for name in SPLIT_NAMES}
    content_hash = _content_hash(parts, _as_numpy(image_set.labels), image_set.item_ids)
    if content_hash != doc["content_hash"]:
        raise UserError(f"labels in {image_set.source} changed since the split was made "
                        f"(content hash differs); restore them or split again")
    return Split(**parts, seed=int(doc["seed"]), val_fraction=float(doc["val_fraction"]),
                 test_fraction=float(doc["test_fraction"]), content_hash=content_hash)


def _check_fractions(val: float, test: float) -> None:
    if not (0 <= val and 0 <= test and val + test < 1):
        raise UserError(f"val fraction {val} and test fraction {test} must each be >= 0 and "
                        f"add up to < 1; e.g. val 0.1 and test 0.1")


def _as_numpy(labels: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(labels, torch.Tensor):
        labels = labels.cpu().numpy()
    return np.asarray(labels, dtype=np.int64)


def _preset_parts(preset: list[str] | None, count: int) -> dict[str, np.ndarray]:
    if preset is None:
        return {"train": np.arange(count, dtype=np.int64), "val": _NO_ITEMS, "test": _NO_ITEMS}
    names = np.asarray(preset)
    unknown = set(np.unique(names)) - set(SPLIT_NAMES)
    if len(names) != count or unknown:
        raise ValueError(f"preset must hold {count} of {SPLIT_NAMES}, got {len(names)} "
                         f"with {sorted(unknown)}")
    return {name: np.flatnonzero(names == name).astype(np.int64) for name in SPLIT_NAMES}


def _carve(
    pool: np.ndarray, labels: np.ndarray, fraction: float, rng: np.random.RandomState
) -> tuple[np.ndarray, np.ndarray]:
    """(kept, carved) out of pool: about `fraction` of each class carved, both sorted."""
    from sklearn.model_selection import train_test_split  # ~1 s to import: only when used

    classes, counts = np.unique(labels[pool], return_counts=True)
    singles = np.isin(labels[pool], classes[counts < 2])  # can't be in both parts: stay
    eligible, kept_aside = pool[~singles], pool[singles]
    if fraction == 0 or len(eligible) < 2:
        return pool, _NO_ITEMS
    try:
        kept, carved = train_test_split(eligible, test_size=fraction,
                                        stratify=labels[eligible], random_state=rng)
    except ValueError:  # fewer carved items than classes: stratification impossible
        try:
            kept, carved = train_test_split(eligible, test_size=fraction, random_state=rng)
        except ValueError:  # the fraction rounds to all or nothing: keep everything
            kept, carved = eligible, _NO_ITEMS
    return np.sort(np.concatenate([kept, kept_aside])), np.sort(carved)


def groups_from_pattern(item_ids: Sequence[str], pattern: str) -> np.ndarray:
    """One group key per item from a regular expression searched in its file name: the first
    captured group (or the whole match). Names it doesn't match form a group of their own."""
    import re
    from pathlib import PurePath

    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise UserError(f"--group-by {pattern!r} is not a valid regular expression: {error}")\
            from None
    keys = []
    for item in item_ids:
        found = compiled.search(PurePath(item).name)
        if found is None:
            keys.append(f"\0{item}")  # cannot collide with a captured name
        else:
            keys.append(found.group(1) if compiled.groups else found.group(0))
    return np.asarray(keys, dtype=object)


def _group_carver(groups: np.ndarray):
    def carve(
        pool: np.ndarray, labels: np.ndarray, fraction: float, rng: np.random.RandomState
    ) -> tuple[np.ndarray, np.ndarray]:
        """(kept, carved) with whole groups: one fold of a stratified group k-fold."""
        from sklearn.model_selection import StratifiedGroupKFold

        folds = max(2, round(1 / fraction)) if fraction > 0 else 0
        if folds == 0 or len(np.unique(groups[pool])) < folds:
            return pool, _NO_ITEMS
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True,
                                        random_state=rng.randint(2**31 - 1))
        kept, carved = next(splitter.split(pool, labels[pool], groups[pool]))
        return np.sort(pool[kept]), np.sort(pool[carved])

    return carve


def _content_hash(parts: dict[str, np.ndarray], labels: np.ndarray,
                  item_ids: Sequence[str]) -> str:
    # Lines sorted by item id: the hash depends on what is in each part, not on the order
    # the source happened to list the items in.
    digest = hashlib.sha256()
    for name in SPLIT_NAMES:
        lines = sorted(f"{item_ids[i]}\t{labels[i]}\n" for i in parts[name])
        # surrogateescape: a file name that is not UTF-8 hashes as its own bytes.
        digest.update(f"[{name}]\n{''.join(lines)}".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()
