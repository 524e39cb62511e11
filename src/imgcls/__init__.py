"""imgcls: deep-learning image classification, end to end.

    run_dir = imgcls.train(data="digits", model="resnet18", epochs=5)
    predictor = imgcls.load(run_dir / "model.safetensors")
    predictor.predict(["cat.jpg"])
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgcls.version import __version__

if TYPE_CHECKING:  # torch is imported where it is used: `imgcls --help` takes no second for it
    import torch

    from imgcls.evaluation.explain_files import ExplainResult
    from imgcls.predict.prediction import Prediction

__all__ = ["__version__", "calibrate", "classify", "evaluate", "explain", "list_models", "load",
           "one_hot", "resume", "train"]


def train(
    data: str = "digits",
    model: str = "auto",
    *,
    overwrite: bool = False,
    show_progress: bool = True,
    on_epoch: Any = None,
    **hyperparameters: Any,
) -> Path:
    """Train `model` on `data`; any TrainConfig field is a keyword. Returns the run directory.
    `on_epoch(record)` is called with each epoch's history record."""
    from imgcls.config import TrainConfig
    from imgcls.training.trainer import train as run_training

    config = TrainConfig.from_dict({"data": data, "model": model, **hyperparameters})
    return run_training(config, overwrite=overwrite, show_progress=show_progress,
                        on_epoch=on_epoch)


def resume(run_dir: str | Path, *, epochs: int | None = None, show_progress: bool = True) -> Path:
    """Continue (or, with more `epochs`, extend) a run from its last.pt."""
    from imgcls.training.trainer import resume as resume_training

    return resume_training(run_dir, epochs=epochs, show_progress=show_progress)


def load(path: str | Path, *, device: str | None = None, backend: str = "torch"):
    """A Predictor for a model file (or a run directory holding model.safetensors);
    `backend` as `--backend` (imgcls.predict.backends)."""
    from imgcls.predict.predictor import Predictor

    return Predictor(path, device=device, backend=backend)


def classify(model: str | Path, inputs: list[str], *, topk: int = 5,
             reject_below: float | str = "card", backend: str = "auto",
             warn: Callable[[str], None] | None = None) -> list[Prediction]:
    """`imgcls predict`: the answers for image files and folders of them (sorted), one per
    file; a file that cannot be read gets an error in its answer. `model`: a model file, a
    run directory or an .onnx file, opened by predict.predictor.open_predictor (an .onnx file
    or a cached export runs without importing torch)."""
    from imgcls.errors import UserError
    from imgcls.predict.inputs import image_files
    from imgcls.predict.predictor import open_predictor

    if topk < 1:
        raise UserError(f"--topk must be at least 1; got {topk}")
    files = image_files(inputs)
    # The one batch these files make, at most 256 (the Predictor's batch): the size the
    # backend is chosen for, and whether a cached export may answer it.
    predictor = open_predictor(model, backend=backend, batch_sizes=(min(len(files), 256),),
                               warn=warn)
    return predictor.predict(files, topk=topk, reject_below=reject_below)


def evaluate(model_path: str | Path, data: str, **options: Any) -> dict[str, Any]:
    from imgcls.evaluation.evaluate import evaluate as run_evaluation

    return run_evaluation(model_path, data, **options)


def calibrate(model_path: str | Path, *, data: str | None = None, data_dir: str | None = None,
              keep: float = 0.95) -> dict[str, Any]:
    """Fit a model file's temperature and `unknown` threshold on its run's validation split
    (what training does at its end) and write them into the file; returns the record."""
    from dataclasses import asdict

    from imgcls.evaluation.recalibrate import calibrate_model_file

    return asdict(calibrate_model_file(model_path, data=data, data_dir=data_dir, keep=keep))


def explain(model_path: str | Path, images: list[str | Path], output_dir: str | Path, *,
            top: int = 1, device: str | None = None) -> ExplainResult:
    """Grad-CAM: for each image (file, or folder of them), an overlay PNG per top class in
    `output_dir` and explanations.json listing them with the class probabilities; files
    that are not images are listed as skipped (not raised). `device` None: CUDA when
    present, else the CPU."""
    from imgcls.evaluation.explain_files import explain_files

    return explain_files(model_path, images, output_dir, top=top, device=device)


def list_models() -> list[str]:
    from imgcls.models import list_models as registered

    return registered()


def one_hot(labels: torch.Tensor | list[int], num_classes: int) -> torch.Tensor:
    """Class indices [N] -> float one-hot rows [N, num_classes]."""
    import torch

    indices = torch.as_tensor(labels, dtype=torch.long)
    return torch.nn.functional.one_hot(indices, num_classes).float()
