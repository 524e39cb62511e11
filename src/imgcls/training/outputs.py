"""What a run leaves behind besides last.pt: the model file, metrics.json and the
predictions of the best model on the test split."""

from __future__ import annotations

import copy
import csv
import io
from typing import Any

import torch

from imgcls.artifact import save_model
from imgcls.csv_safe import safe_row
from imgcls.evaluation.metrics import compute_metrics
from imgcls.files import write_json, write_text
from imgcls.inference import predict_probabilities
from imgcls.model_card import DataRecord, InputShape, ModelCard, RuntimeRecord, TrainingRecord
from imgcls.rundir import RunDir
from imgcls.training.run import Run

# The metrics copied into the model file's header (the full set is in metrics.json).
HEADER_METRICS = (
    "accuracy", "top5_accuracy", "precision_macro", "recall_macro", "f1_macro",
    "precision_weighted", "recall_weighted", "f1_weighted", "num_samples",
)


def cpu_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().to("cpu", copy=True)
            for name, tensor in model.state_dict().items()}


def save_best_model(run: Run, metrics: dict[str, Any]) -> None:
    """model.safetensors from the best weights, whatever the model holds right now."""
    snapshot = copy.deepcopy(run.model).to("cpu")
    snapshot.load_state_dict(run.best_weights)
    save_model(RunDir(run.run_dir).model, snapshot, model_card(run, metrics))


def model_card(run: Run, metrics: dict[str, Any]) -> ModelCard:
    """What the model file says about the run's best model (versions: filled on saving)."""
    return ModelCard(
        architecture=run.architecture,
        class_names=run.data.image_set.class_names,
        input=InputShape(*run.input_shape),
        normalization=run.data.stats,
        metrics=metrics,
        training=TrainingRecord(run.config.to_dict(), run.best.best_epoch),
        data=DataRecord(run.data.image_set.source, run.data.split.content_hash,
                        fixes=run.data.fixes),
        runtime=RuntimeRecord(channels_last=run.channels_last,
                              precision=run.runtime.precision),
    )


def finish(run: Run) -> None:
    """Evaluate the best weights on test (fp32, the Predictor's path) and write the results."""
    if not run.best_weights:
        return
    model = run.eval_model
    model.load_state_dict(run.best_weights)
    part = "test" if len(run.data.split.test) else "val"
    images, labels, indices = run.data.subset_with_indices(part)
    if len(images) == 0:
        run.console.print("[yellow]warning:[/] no test or val images; metrics.json not written")
        return
    probabilities = predict_probabilities(model, run.normalizer, images, device=run.device,
                                          channels_last=run.channels_last)
    metrics = compute_metrics(labels.numpy(), probabilities.numpy(), run.data.image_set.class_names)
    metrics["split"] = part
    write_json(RunDir(run.run_dir).metrics, metrics)
    _write_predictions(run, indices, part, labels, probabilities)
    header = {key: metrics[key] for key in HEADER_METRICS if key in metrics}
    save_best_model(run, {"split": part, run.best.metric: run.best.best_value, **header})
    # After the model is safe: a failure in the report can't cost the model.
    _write_report(run, part, indices, images, labels, probabilities, metrics)
    run.console.print(
        f"best epoch {run.best.best_epoch}: {part} accuracy {metrics['accuracy']:.4f}, "
        f"macro F1 {metrics['f1_macro']:.4f} -> {RunDir(run.run_dir).model}"
    )


def _write_report(
    run: Run, part: str, indices: torch.Tensor, images: torch.Tensor, labels: torch.Tensor,
    probabilities: torch.Tensor, metrics: dict[str, Any],
) -> None:
    from imgcls.evaluation.report import count_per_split, load_history, write_report

    image_set, split = run.data.image_set, run.data.split
    history = load_history(RunDir(run.run_dir).history)
    write_report(
        run.run_dir, probabilities=probabilities.numpy(), labels=labels.numpy(),
        class_names=image_set.class_names,
        item_ids=[image_set.item_ids[i] for i in indices.tolist()],
        images=images, metrics=metrics, history=history,
        summary={"model": run.config.model, "data": image_set.source, "split": part,
                 "training_seconds": sum(r.get("seconds", 0) for r in history or []),
                 "best_epoch": run.best.best_epoch, "device": str(run.device)},
        split_counts=count_per_split(image_set.labels, image_set.class_names,
                                     {p: getattr(split, p) for p in ("train", "val", "test")}),
    )


def _write_predictions(
    run: Run, indices: torch.Tensor, part: str, labels: torch.Tensor,
    probabilities: torch.Tensor,
) -> None:
    names = run.data.image_set.class_names
    item_ids = run.data.image_set.item_ids
    scores, predicted = probabilities.max(dim=1)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["item", "true", "predicted", "score"])
    for index, true, guess, score in zip(
        indices.tolist(), labels.tolist(), predicted.tolist(), scores.tolist(),
        strict=True,
    ):
        writer.writerow(safe_row([item_ids[index], names[true], names[guess], f"{score:.6f}"]))
    write_text(RunDir(run.run_dir).predictions(part), buffer.getvalue())
