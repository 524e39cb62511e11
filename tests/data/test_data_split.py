"""split.py: stratified, seeded, preset-aware splitting and its JSON form."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from imgcls.data.imageset import ImageSet
from imgcls.data.split import Split, make_split, split_from_json
from imgcls.errors import UserError

CLASS_SIZES = {0: 50, 1: 100, 2: 200, 3: 37}


def _labels() -> np.ndarray:
    labels = np.concatenate([np.full(n, c) for c, n in CLASS_SIZES.items()])
    return np.random.default_rng(0).permutation(labels)  # classes interleaved


def _ids(count: int) -> list[str]:
    return [f"item/{i}" for i in range(count)]


def _image_set(labels: np.ndarray, preset: list[str] | None = None) -> ImageSet:
    return ImageSet(images=torch.zeros((len(labels), 1, 2, 2), dtype=torch.uint8),
                    labels=torch.as_tensor(labels, dtype=torch.int64),
                    class_names=[str(c) for c in range(int(labels.max()) + 1)],
                    item_ids=_ids(len(labels)), preset_split=preset, source="test",
                    hflip_ok=True)


def _assert_partition(split: Split, count: int) -> None:
    parts = [split.train, split.val, split.test]
    for part in parts:
        assert part.dtype == np.int64 and np.all(np.diff(part) > 0)  # sorted, no repeats
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(count))


def test_no_preset_is_stratified_80_10_10() -> None:
    labels = _labels()
    split = make_split(labels, preset=None, val=0.1, test=0.1, seed=0, item_ids=_ids(len(labels)))
    _assert_partition(split, len(labels))
    for cls, size in CLASS_SIZES.items():
        for part in (split.val, split.test):
            assert abs(np.sum(labels[part] == cls) - 0.1 * size) <= 1, (cls, size)
    assert abs(len(split.train) - 0.8 * len(labels)) <= len(CLASS_SIZES)


def test_same_seed_same_split_other_seed_other_split() -> None:
    labels = _labels()
    ids = _ids(len(labels))
    first, again = (make_split(labels, preset=None, seed=7, item_ids=ids) for _ in range(2))
    other = make_split(labels, preset=None, seed=8, item_ids=ids)
    for name in ("train", "val", "test"):
        assert np.array_equal(getattr(first, name), getattr(again, name))
    assert first.content_hash == again.content_hash
    assert not np.array_equal(first.test, other.test)
    assert first.content_hash != other.content_hash


def test_preset_train_test_carves_val_from_train_only() -> None:
    labels = _labels()
    preset = ["test" if i % 5 == 0 else "train" for i in range(len(labels))]
    split = make_split(labels, preset=preset, val=0.1, test=0.3, item_ids=_ids(len(labels)))
    _assert_partition(split, len(labels))
    assert split.test.tolist() == [i for i, p in enumerate(preset) if p == "test"]
    train_pool = np.array([i for i, p in enumerate(preset) if p == "train"])
    for cls in CLASS_SIZES:
        in_pool = np.sum(labels[train_pool] == cls)
        assert abs(np.sum(labels[split.val] == cls) - 0.1 * in_pool) <= 1


def test_preset_with_all_three_is_used_as_given() -> None:
    labels = np.array([0, 1, 0, 1, 0, 1])
    preset = ["train", "train", "val", "val", "test", "test"]
    split = make_split(labels, preset=preset, val=0.3, test=0.3, item_ids=_ids(6))
    assert (split.train.tolist(), split.val.tolist(), split.test.tolist()) == (
        [0, 1], [2, 3], [4, 5])


def test_preset_train_and_val_carves_test() -> None:
    labels = np.arange(40) % 2
    preset = ["val" if i < 10 else "train" for i in range(40)]
    split = make_split(labels, preset=preset, val=0.1, test=0.2, item_ids=_ids(40))
    assert split.val.tolist() == list(range(10)) and len(split.test) == 6
    _assert_partition(split, 40)


def test_preset_without_train_items_is_a_user_error() -> None:
    with pytest.raises(UserError, match="no train items"):
        make_split(np.array([0, 1]), preset=["test", "val"], item_ids=_ids(2))


def test_zero_fractions_give_empty_parts() -> None:
    labels = _labels()
    split = make_split(labels, preset=None, val=0.0, test=0.0, item_ids=_ids(len(labels)))
    assert len(split.train) == len(labels)
    assert split.val.dtype == split.test.dtype == np.int64
    assert len(split.val) == len(split.test) == 0
    no_val = make_split(labels, preset=None, val=0.0, test=0.2, item_ids=_ids(len(labels)))
    assert len(no_val.val) == 0 and len(no_val.test) > 0


@pytest.mark.parametrize(
    "labels",
    [
        np.array([0] * 20 + [1] * 20 + [2]),  # a class with one item: stays in train
        np.array([0, 1, 2, 3, 4]),  # every class a single item
        np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4]),  # fewer test items than classes
        np.array([0]),
        np.array([], dtype=np.int64),
    ],
)
def test_classes_too_small_to_stratify_do_not_crash(labels: np.ndarray) -> None:
    ids = _ids(len(labels))
    split = make_split(labels, preset=None, val=0.1, test=0.1, seed=3, item_ids=ids)
    again = make_split(labels, preset=None, val=0.1, test=0.1, seed=3, item_ids=ids)
    _assert_partition(split, len(labels))
    assert np.array_equal(split.test, again.test) and np.array_equal(split.val, again.val)
    if len(labels) == 41:
        assert 40 in split.train


def test_torch_labels_are_accepted() -> None:
    labels = _labels()
    from_numpy = make_split(labels, preset=None, item_ids=_ids(len(labels)))
    from_torch = make_split(torch.from_numpy(labels), preset=None, item_ids=_ids(len(labels)))
    assert from_numpy.content_hash == from_torch.content_hash


def test_hash_changes_when_a_label_changes() -> None:
    labels = _labels()
    ids = _ids(len(labels))
    before = make_split(labels, preset=None, item_ids=ids)
    relabeled = labels.copy()
    relabeled[before.test[0]] = (relabeled[before.test[0]] + 1) % 4
    preset = ["train"] * len(labels)
    for i in before.test:
        preset[i] = "test"
    for i in before.val:
        preset[i] = "val"
    after = make_split(relabeled, preset=preset, item_ids=ids)  # same parts, one label moved
    assert np.array_equal(after.test, before.test)
    assert after.content_hash != before.content_hash


@pytest.mark.parametrize(("val", "test"), [(-0.1, 0.1), (0.1, -0.1), (0.5, 0.5), (0.9, 0.2)])
def test_bad_fractions_are_user_errors(val: float, test: float) -> None:
    with pytest.raises(UserError, match="val fraction"):
        make_split(np.array([0, 1]), preset=None, val=val, test=test, item_ids=_ids(2))


def test_json_round_trip() -> None:
    labels = _labels()
    data = _image_set(labels)
    split = make_split(data.labels, preset=None, seed=5, item_ids=data.item_ids)
    doc = json.loads(json.dumps(split.to_json(data)))
    assert doc["seed"] == 5 and doc["content_hash"] == split.content_hash
    assert doc["test"][:2] == [data.item_ids[i] for i in split.test[:2]]
    loaded = split_from_json(doc, data)
    for name in ("train", "val", "test"):
        assert np.array_equal(getattr(loaded, name), getattr(split, name))
    assert (loaded.seed, loaded.val_fraction, loaded.test_fraction) == (5, 0.1, 0.1)


def test_json_round_trip_survives_reordered_items() -> None:
    labels = _labels()
    data = _image_set(labels)
    doc = make_split(data.labels, preset=None, item_ids=data.item_ids).to_json(data)
    order = np.random.default_rng(1).permutation(len(labels))
    shuffled = ImageSet(images=data.images[order], labels=data.labels[order],
                        class_names=data.class_names,
                        item_ids=[data.item_ids[i] for i in order], preset_split=None,
                        source="test", hflip_ok=True)
    loaded = split_from_json(doc, shuffled)
    assert sorted(shuffled.item_ids[i] for i in loaded.test) == sorted(doc["test"])


def test_json_with_missing_items_or_changed_labels_is_a_user_error() -> None:
    labels = _labels()
    data = _image_set(labels)
    doc = make_split(data.labels, preset=None, item_ids=data.item_ids).to_json(data)
    with pytest.raises(UserError, match="'item/gone'"):
        split_from_json({**doc, "val": [*doc["val"], "item/gone"]}, data)
    relabeled = _image_set((labels + 1) % 4)
    with pytest.raises(UserError, match="labels .* changed"):
        split_from_json(doc, relabeled)
    with pytest.raises(UserError, match="lacks content_hash"):
        split_from_json({k: v for k, v in doc.items() if k != "content_hash"}, data)
