"""Evaluate a model file on a data set: the same split it was trained with, or all of it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imgcls.config import TrainConfig
from imgcls.data.sources import ImageSet, load_source
from imgcls.data.split import split_from_json, split_image_set
from imgcls.errors import UserError
from imgcls.evaluation.metrics import compute_metrics
from imgcls.evaluation.trust import answered_trust, without_temperature
from imgcls.modelfile.card import ModelCard
from imgcls.modelfile.rundir import RunDir
from imgcls.predict.predictor import Predictor

SPLITS = ("train", "val", "test", "all")


@dataclass
class Evaluation:
    metrics: dict[str, Any]  # metrics.json's schema plus `split` and `data`
    probabilities: np.ndarray  # [N, K]
    labels: np.ndarray  # [N], as the model's class indices
    indices: np.ndarray  # [N], into image_set
    image_set: ImageSet
    predictor: Predictor
    uncalibrated: np.ndarray | None = None  # [N, K] before the card's temperature


def evaluate(
    model_path: str | Path, data: str, *, split: str | None = None, data_dir: str | None = None,
    backend: str = "torch",
) -> dict[str, Any]:
    """metrics.json's schema plus `split` and `data`. split None: test for the data the model
    was trained on, all of it for any other data. `backend`: see imgcls.predict.backends."""
    return evaluate_predictions(model_path, data, split=split, data_dir=data_dir,
                                backend=backend).metrics


def evaluate_predictions(
    model_path: str | Path, data: str, *, split: str | None = None, data_dir: str | None = None,
    backend: str = "torch",
) -> Evaluation:
    predictor = Predictor(model_path, backend=backend, batch_sizes=(256,))
    image_set = load_source(
        data, channels=predictor.channels, image_size=predictor.image_size, data_dir=data_dir
    )
    card = predictor.card
    trained_on = card.data is not None and card.data.source == image_set.source
    part = split or ("test" if trained_on else "all")
    if part not in SPLITS:
        raise UserError(f"unknown split {part!r}; --split takes one of: {', '.join(SPLITS)}")
    indices = split_indices(Path(model_path), card, image_set, part, trained_on)
    labels = model_labels(image_set, predictor.class_names)[indices]
    outputs = predictor.outputs(image_set.images[torch.as_tensor(indices)])
    probabilities = outputs.probabilities.numpy()
    metrics = compute_metrics(labels, probabilities, predictor.class_names)
    uncalibrated = None
    if card.trust is not None:
        uncalibrated = without_temperature(probabilities, card.trust.temperature)
        metrics["trust"] = answered_trust(probabilities, uncalibrated,
                                          outputs.familiarity.numpy(), labels, card.trust)
    return Evaluation({**metrics, "split": part, "data": image_set.source},
                      probabilities, labels, indices, image_set, predictor, uncalibrated)


@dataclass
class EvalFiles:
    metrics: dict[str, Any]
    metrics_file: Path
    report: Path | None  # None: no report asked for


def evaluate_to_files(
    model_path: str | Path, data: str, *, split: str | None = None, data_dir: str | None = None,
    backend: str = "torch", output: str | Path | None = None, report: str | Path | None = None,
    with_report: bool = True,
) -> EvalFiles:
    """`imgcls eval`: the metrics JSON written to `output` (default: beside the model, named
    by the split) and, `with_report`, the HTML report to `report` (default: beside it)."""
    from imgcls.utils.files import write_json

    evaluation = evaluate_predictions(model_path, data, split=split, data_dir=data_dir,
                                      backend=backend)
    metrics = evaluation.metrics
    run = RunDir.of_model(model_path)
    metrics_file = Path(output) if output else run.evaluation(metrics["split"], ".json")
    write_json(metrics_file, metrics)
    written = None
    if with_report:
        target = Path(report) if report else run.evaluation(metrics["split"], ".html")
        written = write_eval_report(evaluation, target, model_path)
    return EvalFiles(metrics, metrics_file, written)


def write_eval_report(evaluation: Evaluation, report: Path, model_path: str | Path) -> Path:
    """The HTML report of an evaluation; its charts and mistakes.csv carry the report's name
    as a prefix, so they never overwrite the run's own. The mistakes' heat maps come from the
    model file's torch network (whatever backend predicted); an .onnx file has none."""
    from imgcls.evaluation.explain import load_explainer
    from imgcls.evaluation.report import count_per_split, load_history, write_report
    from imgcls.predict.predictor import is_onnx

    metrics = evaluation.metrics
    explainer = None if is_onnx(model_path) else load_explainer(model_path)[0]
    return write_report(
        report.parent, report_name=report.name, file_prefix=f"{report.stem}-",
        probabilities=evaluation.probabilities, labels=evaluation.labels,
        class_names=evaluation.predictor.class_names,
        item_ids=[evaluation.image_set.item_ids[i] for i in evaluation.indices],
        images=evaluation.image_set.images[torch.as_tensor(evaluation.indices)],
        metrics=metrics, history=load_history(RunDir.of_model(model_path).history),
        summary={"model": evaluation.predictor.card.model_name,
                 "data": metrics["data"], "split": metrics["split"],
                 "model_file": str(model_path)},
        split_counts=count_per_split(evaluation.labels, evaluation.predictor.class_names,
                                     {metrics["split"]: range(len(evaluation.labels))}),
        explainer=explainer, uncalibrated=evaluation.uncalibrated,
    )


def trained_data(file: Path, card: ModelCard, given: str | None, *, flag: str,
                 needed_for: str) -> str:
    """`given`, else the data the model records it was trained on; neither: a UserError
    naming `flag` and what the data is `needed_for`."""
    source = given or card.data_source
    if source is None:
        raise UserError(f"{file} records no training data; pass {flag} with the data it was "
                        f"trained on ({needed_for})")
    return source


def split_indices(
    model_path: Path, card: ModelCard, image_set: ImageSet, part: str, trained_on: bool
) -> np.ndarray:
    """Indices into `image_set` of split `part` (train, val, test, all) of the model's run."""
    if part == "all":
        return np.arange(len(image_set.labels))
    if not trained_on or card.data is None:
        source = card.data_source or "not recorded"
        raise UserError(
            f"--split {part} needs the data the model was trained on "
            f"({source}); use --split all for other data"
        )
    split_file = RunDir.of_model(model_path).split
    if split_file.is_file():
        split = split_from_json(json.loads(split_file.read_text()), image_set)
    elif card.training is None:
        raise UserError(f"{model_path} records no training settings and has no "
                        f"{RunDir.SPLIT} beside it; use --split all")
    else:  # the model file travelled alone: rebuild the split from its training settings
        config = TrainConfig.from_dict(card.training.config, origin=str(model_path))
        split = split_image_set(image_set, val=config.val_fraction, test=config.test_fraction,
                                seed=config.resolved_split_seed, group_by=config.group_by)
        if split.content_hash != card.data.split_hash:
            raise UserError(
                f"{image_set.source} has changed since training (split hash differs); "
                "use --split all, or retrain"
            )
    return np.asarray(getattr(split, part))


def model_labels(image_set: ImageSet, model_classes: list[str]) -> np.ndarray:
    """The data set's labels as the model's class indices (the data may hold fewer classes)."""
    unknown = sorted(set(image_set.class_names) - set(model_classes))
    if unknown:
        raise UserError(
            f"class(es) {', '.join(unknown)} in {image_set.source} are not among the model's "
            f"classes ({', '.join(model_classes)})"
        )
    mapping = np.array([model_classes.index(name) for name in image_set.class_names])
    return mapping[image_set.labels.numpy()]
