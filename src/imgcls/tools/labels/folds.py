"""Out-of-fold probabilities for every training image: K stratified (group-aware) folds, one
model trained per fold on the others (imgcls.train, `--model auto` paced by its share of the
time budget), each predicting the fold it never saw.

Each finished fold leaves `folds/fold-<k>/oof.npz` in the output folder, and `folds.json`
records which items are in which fold: Ctrl-C keeps the finished folds, and a rerun with the
same settings continues with the next.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, train_test_split

from imgcls.config import parse_duration
from imgcls.data.builtin import builtin_name
from imgcls.data.imageset import ImageSet
from imgcls.data.label_fixes import read_fixes
from imgcls.data.sources import load_source
from imgcls.data.split import groups_from_pattern, split_from_parts, split_image_set
from imgcls.errors import UserError
from imgcls.utils.files import atomic_path, write_json

FOLD_VAL = 0.1  # of each fold's training items, to pick its best epoch
# Without --time-budget: this many seconds per image trained on, over all folds, within
# [MIN_BUDGET_S, MAX_BUDGET_S]: Fashion-MNIST's 60,000 get the 10 minutes, a folder of 300
# photos one minute, which its few hundred optimizer steps need.
SECONDS_PER_IMAGE, MIN_BUDGET_S, MAX_BUDGET_S = 0.01, 60.0, 600.0
MIN_FOLD_S = 15.0  # under this a fold's run is mostly starting and finishing
# A folder or CSV is analysed at this side unless --image-size or a pretrained backbone says
# otherwise: a fold has seconds to a few minutes from scratch. 300 photos (3 classes, 64-96
# px, 15 filed wrong, default budget 1 min): at their own 79 px auto trains resnet18 for 10
# steps a fold and flags 80 (precision 0.10, recall 0.62); at 32 px vgg_small trains ~130
# epochs a fold and flags the 13 planted among the analysed, no other (1.00 / 1.00), in 54 s.
SMALL_SIDE = 32
FINDINGS_SHARE = 0.98  # of the budget for the folds: Fashion-MNIST's findings took 5 s of 600


@dataclass(frozen=True)
class LabelsRequest:
    data: str
    output: Path
    folds: int = 5
    time_budget: str | None = None  # None: by the data's size (SECONDS_PER_IMAGE)
    epochs: float | None = None  # a fixed length per fold instead of the budget's share
    model: str = "auto"
    seed: int = 0
    data_dir: str | None = None
    image_size: int | None = None
    channels: int | None = None
    group_by: str | None = None
    relabel: str | None = None  # labels as the user has them now (the bench plants noise so)
    exclude: str | None = None
    pretrained: str | None = None  # frozen features and a trained head: much faster
    init_from: str | None = None
    show_progress: bool = True


@dataclass(frozen=True)
class OutOfFold:
    image_set: ImageSet  # labels as given (with --relabel applied)
    items: np.ndarray  # indices into image_set of the analysed (training) items
    probabilities: np.ndarray  # float32 [len(items), K], each from a model that never saw it


def out_of_fold(request: LabelsRequest, say=print) -> OutOfFold:
    if request.folds < 2:
        raise UserError(f"--folds must be at least 2; got {request.folds}")
    request = replace(request, image_size=_side(request))
    image_set = load_source(request.data, channels=request.channels,
                            image_size=request.image_size, data_dir=request.data_dir)
    if not isinstance(image_set, ImageSet):
        raise UserError(f"{request.data} is too large to hold in memory; `imgcls data labels` "
                        "needs it decoded (raise --cache-limit or use a smaller image size)")
    split = split_image_set(image_set, val=0.1, test=0.1, seed=request.seed,
                            group_by=request.group_by)
    fixes = read_fixes(image_set, relabel=request.relabel, exclude=request.exclude)
    on_disk = replace(image_set)  # a split file hashes the labels on disk (training reads
    fixes.apply(image_set)  # the split before it applies --relabel)
    items = fixes.kept(np.concatenate([split.train, split.val]))
    assignment = _assign_folds(request, image_set, items)
    budget = _budget(request, len(items))
    probabilities = np.zeros((len(items), len(image_set.class_names)), np.float32)
    started = time.monotonic()
    for fold in range(request.folds):
        held = assignment == fold
        stored = _fold_dir(request, fold) / "oof.npz"
        if stored.is_file():
            probabilities[held] = np.load(stored)["probabilities"]
            say(f"fold {fold + 1}/{request.folds}: kept from an earlier run")
            continue
        # what is left, less a share for predicting, cleanlab and the page at the end
        left = max(budget * FINDINGS_SHARE - (time.monotonic() - started), MIN_FOLD_S)
        share = left / (request.folds - fold)
        eta = time.strftime("%H:%M:%S", time.localtime(time.time() + left))
        length = f"{request.epochs:g} epochs" if request.epochs else f"{share:.0f} s"
        say(f"fold {fold + 1}/{request.folds}: training on {int((~held).sum())} images for "
            f"{length}, then predicting the {int(held.sum())} it never saw (all folds "
            f"done about {eta})")
        probabilities[held] = _run_fold(request, fold, image_set, on_disk, items, held, share)
    return OutOfFold(image_set, items, probabilities)


def _assign_folds(request: LabelsRequest, image_set: ImageSet, items: np.ndarray) -> np.ndarray:
    """Fold number per analysed item; the same as an earlier run's where settings agree."""
    labels = image_set.labels.numpy()[items]
    fingerprint = _fingerprint(request, image_set, items)
    record = request.output / "folds.json"
    if record.is_file():
        stored = json.loads(record.read_text())
        if stored.get("fingerprint") == fingerprint:
            return np.asarray(stored["fold"], dtype=np.int64)
        for fold in range(request.folds):  # other settings: earlier folds do not count
            (_fold_dir(request, fold) / "oof.npz").unlink(missing_ok=True)
    counts = np.bincount(labels)
    if counts[counts > 0].min() < request.folds:
        raise UserError(f"a class has fewer than --folds {request.folds} training images; "
                        "lower --folds or add images")
    folds = np.zeros(len(items), dtype=np.int64)
    ids = [image_set.item_ids[i] for i in items]
    if request.group_by:
        splitter = StratifiedGroupKFold(request.folds, shuffle=True, random_state=request.seed)
        parts = splitter.split(items, labels, groups_from_pattern(ids, request.group_by))
    else:
        splitter = StratifiedKFold(request.folds, shuffle=True, random_state=request.seed)
        parts = splitter.split(items, labels)
    for fold, (_, held) in enumerate(parts):
        folds[held] = fold
    request.output.mkdir(parents=True, exist_ok=True)
    write_json(record, {"fingerprint": fingerprint, "folds": request.folds,
                        "fold": folds.tolist()})
    return folds


def _run_fold(request: LabelsRequest, fold: int, image_set: ImageSet, on_disk: ImageSet,
              items: np.ndarray, held: np.ndarray, seconds: float) -> np.ndarray:
    import imgcls

    rest = items[~held]
    train, val = train_test_split(rest, test_size=FOLD_VAL, random_state=request.seed + fold,
                                  stratify=_stratifiable(image_set.labels.numpy()[rest]))
    folder = _fold_dir(request, fold)
    folder.mkdir(parents=True, exist_ok=True)
    split_file = folder / "split.json"
    split = split_from_parts({"train": train, "val": val, "test": items[held]}, on_disk,
                             seed=request.seed)
    write_json(split_file, split.to_json(on_disk))
    run = imgcls.train(
        data=request.data, data_dir=request.data_dir, split_file=str(split_file),
        model=request.model, seed=request.seed + fold, **_length(request, seconds),
        image_size=request.image_size, channels=request.channels, relabel=request.relabel,
        pretrained=request.pretrained, init_from=request.init_from,
        freeze_backbone=bool(request.pretrained or request.init_from),
        # cleanlab reads the probabilities, not only the top class: the epoch with the best
        # validation loss, not the first to reach the best accuracy (on a small validation
        # set that came early, with every probability near 1/K)
        metric="val_loss",
        output=str(folder / "run"), overwrite=True, show_progress=request.show_progress)
    predictor = imgcls.load(run)
    pixels = image_set.images[torch.as_tensor(items[held])]
    if tuple(pixels.shape[1:]) != tuple(predictor.card.input.chw):
        raise UserError(f"fold {fold + 1} trained at {predictor.card.input.chw}, not the "
                        f"{tuple(pixels.shape[1:])} loaded; pass --image-size and --channels")
    probabilities = predictor.probabilities(pixels).numpy().astype(np.float32)
    # atomic: a Ctrl-C while writing leaves no half file for the rerun to trust
    with atomic_path(folder / "oof.npz") as temporary, open(temporary, "wb") as stream:
        np.savez(stream, items=items[held], probabilities=probabilities)
    return probabilities  # the fold's run stays beside it, report.html and all


def _side(request: LabelsRequest) -> int | None:
    """--image-size, else SMALL_SIDE for files trained from scratch (built-in sets are small)."""
    if request.image_size is not None or request.pretrained or request.init_from:
        return request.image_size
    return None if builtin_name(request.data) is not None else SMALL_SIDE


def _length(request: LabelsRequest, seconds: float) -> dict:
    if request.epochs is not None:
        return {"epochs": request.epochs}
    return {"time_budget": f"{max(seconds, MIN_FOLD_S):.0f}s"}


def _budget(request: LabelsRequest, items: int) -> float:
    if request.time_budget is not None:
        return parse_duration(request.time_budget)
    trained = items * (request.folds - 1)
    return min(max(trained * SECONDS_PER_IMAGE, MIN_BUDGET_S), MAX_BUDGET_S)


def _stratifiable(labels: np.ndarray) -> np.ndarray | None:
    counts = np.bincount(labels)
    return labels if counts[counts > 0].min() >= 2 else None


def _fold_dir(request: LabelsRequest, fold: int) -> Path:
    return request.output / "folds" / f"fold-{fold + 1}"


def _fingerprint(request: LabelsRequest, image_set: ImageSet, items: np.ndarray) -> str:
    settings = {key: value for key, value in asdict(request).items()
                if key not in ("output", "show_progress", "time_budget")}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for index in items:
        digest.update(f"{image_set.item_ids[index]}\t{int(image_set.labels[index])}\n".encode())
    return digest.hexdigest()
