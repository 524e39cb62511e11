"""A whole run on digits: the run directory, the model file, resume and the metrics."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors import safe_open
from sklearn.metrics import classification_report

import imgcls
from imgcls.data.sources import load_source
from imgcls.data.split import split_from_json

RUN_FILES = ("config.yaml", "split.json", "history.jsonl", "model.safetensors", "last.pt",
             "metrics.json", "test_predictions.csv")
HISTORY_KEYS = {"epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc",
                "val_f1_macro", "val_loss_se", "val_acc_se", "val_f1_macro_se",
                "images_per_s", "seconds"}
METADATA_KEYS = {"format_version", "architecture", "class_names", "input", "normalization",
                 "metrics", "training", "data", "runtime", "versions", "trust"}


def test_run_directory_holds_every_file(digits_run: Path) -> None:
    for name in RUN_FILES:
        assert (digits_run / name).is_file(), name
    assert not list(digits_run.glob("*.tmp")), "a temporary file was left behind"
    config = yaml.safe_load((digits_run / "config.yaml").read_text())
    assert config["model"] == "lenet5" and config["epochs"] == 3
    history = [json.loads(line) for line in (digits_run / "history.jsonl").read_text().splitlines()]
    assert [record["epoch"] for record in history] == [1, 2, 3]
    assert all(set(record) == HISTORY_KEYS for record in history)
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_model_file_is_self_describing(digits_run: Path) -> None:
    with safe_open(str(digits_run / "model.safetensors"), framework="pt") as handle:
        metadata = json.loads(handle.metadata()["imgcls"])
    assert set(metadata) == METADATA_KEYS
    assert metadata["architecture"]["name"] == "lenet5"
    assert metadata["format_version"] == 2
    assert metadata["runtime"] == {"channels_last": False, "precision": "fp32"}  # lenet5: NCHW
    assert metadata["class_names"] == [str(digit) for digit in range(10)]
    assert metadata["input"] == {"channels": 1, "height": 32, "width": 32}
    assert metadata["normalization"]["mode"] == "meanstd"
    assert metadata["data"]["split_hash"] == json.loads(
        (digits_run / "split.json").read_text())["content_hash"]
    metrics = json.loads((digits_run / "metrics.json").read_text())
    assert metadata["metrics"]["accuracy"] == metrics["accuracy"]
    trust = metadata["trust"]  # fitted on the validation split after training
    assert trust["temperature"] > 0 and trust["score"] == "energy" and trust["keep"] == 0.95
    assert trust["fitted"]["images"] == len(json.loads(
        (digits_run / "split.json").read_text())["val"])


def test_resume_state_loads_without_pickle(digits_run: Path) -> None:
    state = torch.load(digits_run / "last.pt", map_location="cpu", weights_only=True)
    assert state["position"]["epoch"] == 4 and state["position"]["step"] == 0
    assert {"model", "optimizer", "schedule", "scaler", "best", "rng"} <= set(state)


def _test_images(run_dir: Path) -> tuple[torch.Tensor, list[str]]:
    image_set = load_source("digits")
    split = split_from_json(json.loads((run_dir / "split.json").read_text()), image_set)
    return image_set.images[torch.as_tensor(split.test)], [image_set.item_ids[i] for i in
                                                             split.test]


def test_loaded_model_predicts_what_training_predicted(digits_run: Path) -> None:
    with open(digits_run / "test_predictions.csv") as stream:
        rows = list(csv.DictReader(stream))
    images, item_ids = _test_images(digits_run)
    assert [row["item"] for row in rows] == item_ids
    predictor = imgcls.load(digits_run / "model.safetensors")
    # The classes, as training wrote them: none turned away as `unknown` here.
    predictions = predictor.predict([image[0].numpy() for image in images], topk=3,
                                    reject_below="off")
    assert [p.label for p in predictions] == [row["predicted"] for row in rows]
    scores = np.array([p.score for p in predictions])
    np.testing.assert_allclose(scores, [float(row["score"]) for row in rows], atol=1e-5)


def test_metrics_agree_with_scikit_learn(digits_run: Path) -> None:
    with open(digits_run / "test_predictions.csv") as stream:
        rows = list(csv.DictReader(stream))
    true = [row["true"] for row in rows]
    predicted = [row["predicted"] for row in rows]
    report = classification_report(true, predicted, output_dict=True, zero_division=0)
    metrics = json.loads((digits_run / "metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx(report["accuracy"])
    assert metrics["num_samples"] == len(rows)
    for average in ("macro", "weighted"):
        for name in ("precision", "recall", "f1"):
            key = "f1-score" if name == "f1" else name
            assert metrics[f"{name}_{average}"] == pytest.approx(report[f"{average} avg"][key])
    assert len(metrics["per_class"]) == 10  # the loop below checks every digit
    for label, row in metrics["per_class"].items():
        assert row["f1"] == pytest.approx(report[label]["f1-score"])
        assert row["support"] == report[label]["support"]
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.sum() == len(rows) and np.trace(matrix) == sum(
        t == p for t, p in zip(true, predicted, strict=True))
    assert metrics["accuracy"] > 0.8  # 3 epochs of lenet5 on digits is well past chance


def test_eval_reproduces_training_metrics(digits_run: Path) -> None:
    metrics = imgcls.evaluate(digits_run / "model.safetensors", "digits")
    recorded = json.loads((digits_run / "metrics.json").read_text())
    assert metrics["split"] == "test"
    assert metrics["accuracy"] == pytest.approx(recorded["accuracy"])
    assert metrics["confusion_matrix"] == recorded["confusion_matrix"]


@pytest.mark.slow
def test_resume_continues_to_more_epochs(digits_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "resumed"
    imgcls.train(data="digits", model="lenet5", epochs=2, batch_size=64, precision="fp32",
                 output=str(run_dir), show_progress=False)
    imgcls.resume(run_dir, epochs=3, show_progress=False)
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert [record["epoch"] for record in history] == [1, 2, 3]
    assert torch.load(run_dir / "last.pt", weights_only=True)["position"]["epoch"] == 4
    assert (run_dir / "split.json").read_text() == (digits_run / "split.json").read_text()


def test_one_hot() -> None:
    encoded = imgcls.one_hot([2, 0], 3)
    assert encoded.tolist() == [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]


@pytest.mark.slow
def test_auto_precision_is_chosen_again_on_each_machine(tmp_path: Path) -> None:
    """config.yaml keeps `precision: auto`, not what this CPU picked (bf16 where it runs bf16
    natively): `-c config.yaml` or resume on an AVX2-only CPU must not inherit bf16 there."""
    from imgcls.runtime import cpu_runs_bf16

    run_dir = tmp_path / "auto"
    imgcls.train(data="digits", model="vgg_small", width=0.25, epochs=0.2, batch_size=64,
                 output=str(run_dir), show_progress=False)
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["precision"] == "auto"
    metadata = imgcls.load(run_dir).metadata
    assert metadata["runtime"]["precision"] == ("bf16" if cpu_runs_bf16() else "fp32")
