"""`imgcls export --quantize int8` (cli/serve.py prints the result): quantize the model file,
compare the int8 model with fp32 on the test split, and keep it (in the backend cache, with
the check beside it) only when its accuracy dropped no more than allowed and it agrees with
fp32 often enough. The check records the quantization scheme and this CPU's kind; up to
CHECK_IMAGES of the test images are kept with fp32's answers, so a CPU of another kind can
check it again (int8_trust.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from imgcls.evaluation.evaluate import evaluate_predictions, split_indices, trained_data
from imgcls.export.cache import cache_for
from imgcls.export.int8_embedded import write_with_check
from imgcls.export.int8_record import (
    MIN_AGREEMENT,
    CheckImages,
    Int8Check,
    write_check,
    write_check_images,
)
from imgcls.export.quantize import SCHEME, quantize_int8
from imgcls.modelfile.artifact import model_file, read_card
from imgcls.predict.backends.choose import cached_runner, fp32_onnx
from imgcls.utils.cpus import cpu_kind

CALIBRATION_IMAGES = 512  # from the training split, evenly spread over it
CHECK_IMAGES = 512  # test images kept for a re-check on another CPU: about a second of int8
# ... and at most this many bytes of them: 512 digits are 0.5 MB, 55 photos at 224 px 8 MB
# (an int8 file written with -o carries them too, so they must not outweigh the model).
CHECK_BYTES = 8 * 2**20


def export_int8(model_path: str | Path, *, data: str | None, data_dir: str | None,
                max_accuracy_drop: float, min_agreement: float = MIN_AGREEMENT,
                output: str | Path | None = None) -> tuple[Int8Check, Path | None]:
    """The check, and the int8 file written (None when refused)."""
    file = model_file(model_path)
    card = read_card(file)
    data = trained_data(file, card, data, flag="--check-data",
                        needed_for="int8 calibrates on its training split")
    fp32 = evaluate_predictions(file, data, split="test", data_dir=data_dir)
    images, labels = fp32.image_set.images, fp32.labels
    train = split_indices(file, card, fp32.image_set, "train", trained_on=True)
    cache = cache_for(file)
    int8_path = quantize_int8(fp32_onnx(cache, file), cache.path("int8.onnx"),
                              images[torch.as_tensor(spread(train, CALIBRATION_IMAGES))])
    int8 = cached_runner(int8_path, "onnx-int8", threads=torch.get_num_threads())
    test_images = images[torch.as_tensor(fp32.indices)]
    int8_probabilities = int8.probabilities(test_images.numpy(), 256)
    check = Int8Check(
        samples=len(labels), data=fp32.metrics["data"],
        top1_agreement=float(np.mean(int8_probabilities.argmax(1)
                                     == fp32.probabilities.argmax(1))),
        fp32_accuracy=accuracy(fp32.probabilities, labels),
        int8_accuracy=accuracy(int8_probabilities, labels),
        max_accuracy_drop=max_accuracy_drop, min_agreement=min_agreement,
        calibration_images=min(len(train), CALIBRATION_IMAGES),
        scheme=SCHEME, cpu_kind=cpu_kind(),
    )
    per_image = max(int(test_images[0].numel()), 1) if len(test_images) else 1
    kept = spread(np.arange(len(labels)), max(1, min(CHECK_IMAGES, CHECK_BYTES // per_image)))
    stored = CheckImages(test_images[torch.as_tensor(kept)].numpy(), np.asarray(labels)[kept],
                         fp32.probabilities[kept].astype(np.float32))
    write_check_images(cache.path("int8.check.npz"), stored)
    write_check(cache.path("int8.json"), check)
    if not check.passed:
        int8_path.unlink(missing_ok=True)  # auto and --backend onnx-int8 must not find it
        return check, None
    if output is not None:  # a file on its own: its check travels inside it
        return check, write_with_check(int8_path, Path(output), check, stored)
    return check, int8_path


def spread(indices: np.ndarray, count: int) -> np.ndarray:
    """Up to `count` of `indices`, evenly spaced: every class of a sorted split is in it."""
    if len(indices) <= count:
        return indices
    return indices[np.linspace(0, len(indices) - 1, count).round().astype(int)]


def refusal(check: Int8Check) -> str:
    """Which threshold the check missed, naming its flag."""
    if check.top1_agreement < check.min_agreement:
        return (f"top-1 agreement with fp32 {check.top1_agreement:.2%}, below "
                f"--min-agreement {check.min_agreement:g}")
    return (f"test accuracy dropped {check.accuracy_drop_points:.2f} points, more than "
            f"--max-accuracy-drop {check.max_accuracy_drop:g}")


def accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(probabilities.argmax(1) == labels))
