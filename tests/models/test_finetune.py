"""Fine-tuning: torchvision-format weights (offline, from a file) and our own model files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

import imgcls
from imgcls.modelfile.artifact import read_weights

from imagefolder import write_folder


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_folder(tmp_path_factory.mktemp("data") / "shapes", per_class=8)


@pytest.mark.slow
def test_pretrained_file_in_torchvision_format(shapes: Path, tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = torchvision.models.resnet18(weights=None).state_dict()
    weights_file = tmp_path / "resnet18-imagenet.pth"
    torch.save(source, weights_file)
    run_dir = imgcls.train(data=str(shapes), model="resnet18", pretrained=str(weights_file),
                           freeze_backbone=True, epochs=1, batch_size=8, image_size=32,
                           channels=3, precision="fp32", output=str(tmp_path / "run"),
                           show_progress=False)
    trained = read_weights(run_dir / "model.safetensors")
    # The frozen backbone is torchvision's file, untouched; the head is new, for 3 classes.
    for key in ("layer1.0.conv1.weight", "layer4.1.bn2.weight", "layer3.0.downsample.0.weight"):
        assert torch.equal(trained[key], source[key]), key
    assert trained["fc.weight"].shape == (3, 512)


@pytest.mark.slow
def test_init_from_a_model_with_other_classes(digits_run: Path, shapes: Path,
                                              tmp_path: Path) -> None:
    start = read_weights(digits_run / "model.safetensors")
    run_dir = imgcls.train(data=str(shapes), model="lenet5",
                           init_from=str(digits_run / "model.safetensors"), freeze_backbone=True,
                           epochs=1, batch_size=8, image_size=32, channels=1, precision="fp32",
                           output=str(tmp_path / "run"), show_progress=False)
    trained = read_weights(run_dir / "model.safetensors")
    head = [key for key in trained if trained[key].shape != start[key].shape]
    assert head and all(trained[key].shape[0] == 3 for key in head if key.endswith("weight"))
    unchanged = [key for key in trained if key not in head and key.endswith("weight")]
    assert unchanged and all(torch.equal(trained[key], start[key]) for key in unchanged)
