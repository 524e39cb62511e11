"""What a run leaves behind besides last.pt: the model file, metrics.json and the
predictions of the best model on the test split."""

from __future__ import annotations

import copy
import csv
import io
from typing import Any

import torch

from imgcls.evaluation.metrics import compute_metrics
from imgcls.evaluation.trust import calibrated, fit_trust, trust_metrics
from imgcls.modelfile.artifact import save_model
from imgcls.modelfile.card import (
    DataRecord,
    InputShape,
    ModelCard,
    RuntimeRecord,
    TrainingRecord,
    TrustRecord,
)
from imgcls.modelfile.rundir import RunDir
from imgcls.predict.inference import predict_logits
from imgcls.training.run import Run
from imgcls.utils.csv_safe import safe_row
from imgcls.utils.files import write_json, write_text

# The metrics copied into the model file's header (the full set is in metrics.json).
HEADER_METRICS = (
    "accuracy", "top5_accuracy", "precision_macro", "recall_macro", "f1_macro",
    "precision_weighted", "recall_weighted", "f1_weighted", "num_samples",
)


def cpu_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().to("cpu", copy=True)
            for name, tensor in model.state_dict().items()}


def save_best_model(run: Run, metrics: dict[str, Any], trust: TrustRecord | None = None) -> None:
    """model.safetensors from the best weights, whatever the model holds right now."""
    snapshot = copy.deepcopy(run.model).to("cpu")
    snapshot.load_state_dict(run.best_weights)
    save_model(RunDir(run.run_dir).model, snapshot, model_card(run, metrics, trust))


def model_card(run: Run, metrics: dict[str, Any], trust: TrustRecord | None = None) -> ModelCard:
    """What the model file says about the run's best model (versions: filled on saving)."""
    return ModelCard(
        architecture=run.architecture,
        class_names=run.data.image_set.class_names,
        input=InputShape(*run.input_shape),
        normalization=run.data.stats,
        metrics=metrics,
        training=TrainingRecord(run.recorded_config.to_dict(), run.best.kept_epoch),
        data=DataRecord(run.data.image_set.source, run.data.split.content_hash,
                        fixes=run.data.fixes),
        runtime=RuntimeRecord(channels_last=run.channels_last,
                              precision=run.runtime.precision),
        trust=trust,
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
    logits = _logits(run, model, images)
    trust = _fit_trust(run, model)
    temperature = trust.temperature if trust is not None else 1.0
    # What the saved file answers: its head is divided by the temperature when loaded.
    probabilities = torch.from_numpy(calibrated(logits.numpy(), temperature))
    metrics = compute_metrics(labels.numpy(), probabilities.numpy(), run.data.image_set.class_names)
    metrics["split"] = part
    if trust is not None:
        metrics["trust"] = trust_metrics(logits.numpy(), labels.numpy(), trust)
    write_json(RunDir(run.run_dir).metrics, metrics)
    _write_predictions(run, indices, part, labels, probabilities)
    header = {key: metrics[key] for key in HEADER_METRICS if key in metrics}
    save_best_model(run, {"split": part, run.best.metric: run.best.kept_value, **header}, trust)
    # After the model is safe: a failure in the report can't cost the model.
    uncalibrated = logits.softmax(dim=1) if trust is not None else None
    _write_report(run, part, indices, images, labels, probabilities, metrics, uncalibrated)
    run.console.print(
        f"{run.best.describe_kept()}: {part} accuracy {metrics['accuracy']:.4f}, "
        f"macro F1 {metrics['f1_macro']:.4f} -> {RunDir(run.run_dir).model}"
    )


def _logits(run: Run, model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    return predict_logits(model, run.normalizer, images, device=run.device,
                          channels_last=run.channels_last)


def _fit_trust(run: Run, model: torch.nn.Module) -> TrustRecord | None:
    """The temperature and `unknown` threshold, fitted on the validation split: images the
    weights never trained on (the best epoch was chosen on them, which a temperature and a
    quantile barely notice). None under --no-calibrate or without validation images."""
    if not run.config.calibrate:
        return None
    images, labels, _ = run.data.subset_with_indices("val")
    if len(images) == 0:
        run.console.print("[yellow]warning:[/] no validation images: probabilities left "
                          "uncalibrated, no `unknown` threshold")
        return None
    trust = fit_trust(_logits(run, model, images).numpy(), labels.numpy(),
                      keep=run.config.ood_keep)
    run.console.print(
        f"calibrated on {len(labels)} validation images: temperature {trust.temperature:.3f}, "
        f"ECE {trust.fitted['ece_before']:.4f} -> {trust.fitted['ece_after']:.4f}; "
        f"`unknown` below familiarity {trust.threshold:.3f} (keeps {trust.keep:.0%})")
    return trust


def _write_report(
    run: Run, part: str, indices: torch.Tensor, images: torch.Tensor, labels: torch.Tensor,
    probabilities: torch.Tensor, metrics: dict[str, Any],
    uncalibrated: torch.Tensor | None = None,
) -> None:
    from imgcls.evaluation.explain import Explainer
    from imgcls.evaluation.report import count_per_split, load_history, write_report

    image_set, split = run.data.image_set, run.data.split
    history = load_history(RunDir(run.run_dir).history)
    # The best weights, which finish() loaded: the heat maps of the mistakes the report shows.
    explainer = Explainer.for_network(run.eval_model, run.normalizer, run.architecture.name,
                                      run.input_shape)
    write_report(
        run.run_dir, probabilities=probabilities.numpy(), labels=labels.numpy(),
        class_names=image_set.class_names,
        item_ids=[image_set.item_ids[i] for i in indices.tolist()],
        images=images, metrics=metrics, history=history,
        uncalibrated=None if uncalibrated is None else uncalibrated.numpy(),
        summary={"model": run.config.model, "data": image_set.source, "split": part,
                 "training_seconds": sum(r.get("seconds", 0) for r in history or []),
                 "best_epoch": run.best.kept_epoch, "device": str(run.device)},
        split_counts=count_per_split(image_set.labels, image_set.class_names,
                                     {p: getattr(split, p) for p in ("train", "val", "test")}),
        explainer=explainer,
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
