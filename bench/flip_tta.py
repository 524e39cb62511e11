"""What --tta hflip buys: trained models' test accuracy without and with the flip average.

Last run (2026-11-30, bench/results/flip_tta.json): 2-core AMD EPYC VM, AVX512 with native
bf16, torch 2.14.1, 2 threads; Fashion-MNIST's 10,000 test images, fp32; the models are the
runs behind the README's tables and the recipes' evidence:
    network          trained                      plain   hflip   points  seconds
    densenet_bc_40   60m, --tta hflip (recipe)    0.9441  0.9463  +0.22   36.9 -> 71.6
    densenet_bc_40   60m, before --tta            0.9421  0.9467  +0.46   35.5 -> 69.1
    densenet_bc_40   60m, 1 thread                0.9402  0.9404  +0.02   36.4 -> 71.8
    resnet20         60m, 1 thread                0.9467  0.9491  +0.24    4.5 -> 9.4
    vgg_small w0.5   auto 2m                      0.9274  0.9312  +0.38    1.3 -> 2.6
    vgg_small w1.5   auto 45m                     0.9492  0.9523  +0.31    6.4 -> 12.7
    vgg_small w0.5   auto 10m, AVX2 emulated      0.9381  0.9401  +0.20    1.1 -> 2.3
    vgg_small w1.5   auto 45m, AVX2 emulated      0.9474  0.9495  +0.21    6.5 -> 13.0
    vgg_small w0.5   auto 2m, AVX2 emulated       0.9160  0.9209  +0.49    1.3 -> 2.5
    alexnet_small    5m                           0.9290  0.9287  -0.03    4.6 -> 9.4
So the flip average adds +0.2 to +0.5 points on all but alexnet_small, for twice the
inference time. Only the densenet_bc_40 recipe turns it on (it needs it for its bar).

Each model file is evaluated twice on its data set's official test split, on the same
weights: as trained (the plain network), and with the flip average that --tta hflip saves
in the model (imgcls.models.flip_tta: the eval-mode logits of the image and its mirror,
averaged). Accuracy does not depend on the machine; the inference time does (twice the
forward passes), so the seconds are printed for scale only.

    cd bench && python flip_tta.py RUN_DIR_OR_MODEL_FILE... [--data fashion-mnist]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from imgcls.data.builtin import load_builtin
from imgcls.data.normalize import Normalizer
from imgcls.modelfile.artifact import load_model
from imgcls.models import create_model
from imgcls.predict.inference import predict_probabilities

from machine import describe

RESULTS = Path(__file__).parent / "results" / "flip_tta.json"


def test_split(data: str, channels: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The official test split's uint8 images and labels of a built-in data set."""
    image_set = load_builtin(data, channels=channels, size=size, data_dir=None)
    if image_set.preset_split is None:
        raise SystemExit(f"{data} has no official test split")
    test = torch.tensor([part == "test" for part in image_set.preset_split])
    return image_set.images[test], image_set.labels[test]


def accuracy_and_seconds(model: torch.nn.Module, normalizer: Normalizer,
                         images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    started = time.perf_counter()
    probabilities = predict_probabilities(model, normalizer, images)
    seconds = time.perf_counter() - started
    return float((probabilities.argmax(dim=1) == labels).float().mean()), seconds


def compare(path: str, data: str) -> dict:
    trained, card = load_model(path)
    kwargs = {**card.architecture.kwargs}
    kwargs.pop("tta", None)
    plain = create_model(card.architecture.name, **kwargs).eval()
    plain.load_state_dict(trained.state_dict())
    averaged = create_model(card.architecture.name, **kwargs, tta="hflip").eval()
    averaged.load_state_dict(trained.state_dict())
    images, labels = test_split(data, card.input.channels, card.input.height)
    normalizer = Normalizer(card.normalization)
    plain_accuracy, plain_s = accuracy_and_seconds(plain, normalizer, images, labels)
    flip_accuracy, flip_s = accuracy_and_seconds(averaged, normalizer, images, labels)
    return {"model": path, "network": card.architecture.name,
            "width": kwargs.get("width", 1.0), "test_images": len(labels),
            "plain": plain_accuracy, "hflip": flip_accuracy,
            "gain_points": 100 * (flip_accuracy - plain_accuracy),
            "plain_s": plain_s, "hflip_s": flip_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="run directories or model files")
    parser.add_argument("--data", default="fashion-mnist")
    args = parser.parse_args()
    rows = [compare(path, args.data) for path in args.models]
    for row in rows:
        print(f"{row['network']:16s} width {row['width']:<4} plain {row['plain']:.4f}  "
              f"hflip {row['hflip']:.4f}  {row['gain_points']:+.2f} points  "
              f"({row['plain_s']:.1f} s -> {row['hflip_s']:.1f} s)  {row['model']}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": describe(), "data": args.data, "rows": rows},
                                  indent=2))


if __name__ == "__main__":
    main()
