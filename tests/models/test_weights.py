"""Pretrained weights as data (torchvision's records) and the checks a weights file passes
before use: the sha256 its name promises, another network's file, a file cut short. Every
weights file here is made by the test; nothing is downloaded."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import safetensors.torch
import torch
import torchvision

from imgcls.cli import main
from imgcls.errors import UserError
from imgcls.models import (
    create_model,
    get_spec,
    imagenet_weights,
    list_models,
    load_pretrained,
    read_state_dict_file,
    torchvision_state_dict,
)
from imgcls.models import pretrained as pretrained_module
from imgcls.models.weights_file import file_sha256

from imagefolder import write_folder


def _save_state_dict(network: str, path: Path) -> Path:
    torch.manual_seed(0)
    torch.save(torchvision.models.get_model(network, weights=None).state_dict(), path)
    return path


def _resnet18() -> torch.nn.Module:
    return create_model("resnet18", num_classes=3, in_channels=3, image_size=32)


def _one_line_error(call, *args: object, **kwargs: object) -> str:
    with pytest.raises(UserError) as caught:
        call(*args, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_every_torchvision_network_has_a_weights_record() -> None:
    for name in list_models():
        network = get_spec(name).torchvision_name
        if network is None:
            continue
        record = imagenet_weights(network)
        assert record.url.endswith("/" + record.file_name), name
        assert record.file_name.endswith(f"-{record.sha256_prefix}.pth"), name
        assert len(record.sha256_prefix) == 8, name
        assert record.num_classes == 1000 and record.crop_size == 224, name
        assert record.mean == pytest.approx((0.485, 0.456, 0.406)), name
        assert record.std == pytest.approx((0.229, 0.224, 0.225)), name
        assert record.resize_size >= record.crop_size, name
    assert imagenet_weights("resnet18").file_name == "resnet18-f37072fd.pth"
    assert imagenet_weights("efficientnet_b0").interpolation == "bicubic"


def test_a_file_whose_sha256_is_not_the_one_its_name_says_is_refused(tmp_path: Path) -> None:
    wrong = _save_state_dict("resnet18", tmp_path / "resnet18-f37072fd.pth")
    message = _one_line_error(load_pretrained, _resnet18(), get_spec("resnet18"), str(wrong),
                              in_channels=3)
    assert str(wrong) in message and "sha256 starts with f37072fd" in message

    # The same file under the name of its own sha256 loads.
    named = wrong.rename(tmp_path / f"resnet18-{file_sha256(wrong)[:8]}.pth")
    report = load_pretrained(_resnet18(), get_spec("resnet18"), str(named), in_channels=3)
    assert "layer4.1.conv2.weight" in report.loaded


def test_a_damaged_cached_download_is_refused(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = imagenet_weights("mobilenet_v2").cached_path()
    assert cached.parent == tmp_path / "hub" / "checkpoints"
    cached.parent.mkdir(parents=True)
    _save_state_dict("mobilenet_v2", cached)  # another file than torchvision's

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cached file is not downloaded again")

    monkeypatch.setattr(pretrained_module.torch.hub, "download_url_to_file", no_download)
    message = _one_line_error(torchvision_state_dict, get_spec("mobilenet_v2"))
    assert str(cached) in message and "delete it and download it again" in message


def test_another_networks_file_is_refused(tmp_path: Path) -> None:
    mobilenet = _save_state_dict("mobilenet_v2", tmp_path / "weights.pth")
    message = _one_line_error(load_pretrained, _resnet18(), get_spec("resnet18"),
                              str(mobilenet), in_channels=3)
    assert str(mobilenet) in message
    assert "only 0.0% of this model's weights fit" in message
    assert "another architecture" in message


def test_a_file_cut_short_is_refused(tmp_path: Path) -> None:
    state_dict = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(state_dict, tmp_path / "whole.pth")
    safetensors.torch.save_file(state_dict, tmp_path / "whole.safetensors")
    for suffix in (".pth", ".safetensors"):
        data = (tmp_path / f"whole{suffix}").read_bytes()
        cut = tmp_path / f"half{suffix}"
        cut.write_bytes(data[: len(data) // 2])
        message = _one_line_error(read_state_dict_file, cut)
        assert str(cut) in message and "damaged, cut short" in message


@pytest.mark.parametrize(("make", "expected"), [
    (lambda path: path.mkdir(), "is a folder, not a weights file"),
    (lambda path: None, "file not found"),
    (lambda path: path.write_bytes(b""), "(0 bytes)"),
    (lambda path: path.write_text("not weights"), "damaged, cut short"),
], ids=["folder", "missing", "empty", "text"])
def test_a_path_that_holds_no_weights_is_named_in_one_line(tmp_path: Path, make,
                                                            expected: str) -> None:
    path = tmp_path / "weights.pth"
    make(path)
    message = _one_line_error(read_state_dict_file, path)
    assert str(path) in message and expected in message


@pytest.mark.parametrize("wrap", [
    lambda weights: {"model": weights, "optimizer": {"state": {}, "param_groups": []},
                     "epoch": 3, "args": argparse.Namespace(lr=0.1, model="resnet18")},
    lambda weights: {"state_dict": weights, "epoch": 3},
    lambda weights: {f"module.{name}": value for name, value in weights.items()},
    lambda weights: {"state_dict": {f"_orig_mod.{name}": value
                                    for name, value in weights.items()}},
], ids=["torchvision-reference", "timm-lightning", "ddp", "compiled"])
def test_a_training_checkpoint_gives_its_weights(tmp_path: Path, wrap) -> None:
    weights = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(wrap(weights), tmp_path / "checkpoint.pth")
    read = read_state_dict_file(tmp_path / "checkpoint.pth")
    assert read.keys() == weights.keys()
    assert all(torch.equal(read[name], weights[name]) for name in weights)


def test_the_cli_says_it_in_one_line_and_exits_2(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    data = write_folder(tmp_path / "shapes", per_class=4)
    mobilenet = _save_state_dict("mobilenet_v3_small", tmp_path / "weights.pth")
    code = main(["train", "--data", str(data), "--model", "resnet18", "--image-size", "32",
                 "--pretrained", str(mobilenet), "--epochs", "1", "-o", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and str(mobilenet) in err and "another architecture" in err
