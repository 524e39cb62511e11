"""Grad-CAM (evaluation/explain.py, `imgcls explain`): the registry's layer for every network,
heat maps in [0, 1] at the input size, and on data where one quadrant decides the class, heat
that lies on that quadrant, for a ResNet and a DenseNet trained through imgcls.train."""

from __future__ import annotations

import base64
import io
import json
import re
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import imgcls
from imgcls.cli import main
from imgcls.data.normalize import Normalizer
from imgcls.evaluation.explain import (
    Explainer,
    overlay_pixels,
    overlay_png,
    spatial_layer,
    unit_scale,
)
from imgcls.evaluation.explain_files import INDEX_FILE
from imgcls.evaluation.metrics import compute_metrics
from imgcls.evaluation.report import write_report
from imgcls.models import create_model, get_spec, list_models

SIDE, HALF = 32, 16
# Class evidence: bright stripes across one quadrant (which one varies), noise everywhere
# else. "none" has no stripes, so each stripe class must be found, not just be "the other".
CLASSES = ("horizontal", "none", "vertical")
STRIPED = ("horizontal", "vertical")
QUADRANTS = ((0, 0), (0, 1), (1, 0), (1, 1))  # (row, column) of halves
GRAY = Normalizer({"mode": "meanstd", "mean": [0.5], "std": [0.25]})
COLOUR = Normalizer({"mode": "meanstd", "mean": [0.5] * 3, "std": [0.25] * 3})


def striped(kind: str, quadrant: tuple[int, int] | None, rng: np.random.Generator) -> np.ndarray:
    pixels = rng.integers(40, 216, (SIDE, SIDE)).astype(np.uint8)
    if quadrant is None:
        return pixels
    band = (np.arange(HALF) // 2) % 2 * 200 + 25  # 2 px bright, 2 px dark
    patch = np.tile(band, (HALF, 1)) if kind == "vertical" else np.tile(band[:, None], (1, HALF))
    row, column = quadrant
    pixels[row * HALF:(row + 1) * HALF, column * HALF:(column + 1) * HALF] = patch
    return pixels


def write_stripes(root: Path, per_class: int = 80, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for kind in CLASSES:
        (root / kind).mkdir(parents=True)
        for index in range(per_class):
            quadrant = None if kind == "none" else QUADRANTS[rng.integers(4)]
            Image.fromarray(striped(kind, quadrant, rng)).save(root / kind / f"{index:03d}.png")
    return root


@pytest.fixture(scope="module")
def probes(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, str, tuple[int, int]]]:
    """Each stripe class in each quadrant, as PNG files: (path, class, quadrant)."""
    folder = tmp_path_factory.mktemp("probes")
    rng = np.random.default_rng(7)
    made = []
    for kind in STRIPED:
        for quadrant in QUADRANTS:
            path = folder / f"{kind}-{quadrant[0]}{quadrant[1]}.png"
            Image.fromarray(striped(kind, quadrant, rng)).save(path)
            made.append((path, kind, quadrant))
    return made


@pytest.fixture(scope="module", params=[("resnet20", 0.5, 3), ("densenet_bc_40", 0.25, 2)],
                ids=["resnet20", "densenet_bc_40"])
def striped_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                ) -> Path:
    """A brief run on the stripes (densenet_bc_40's recipe adds --tta hflip: its plain
    forward is what gets explained)."""
    model, width, epochs = request.param
    data = write_stripes(tmp_path_factory.mktemp("stripes"))
    return imgcls.train(data=str(data), model=model, width=width, epochs=epochs, image_size=SIDE,
                        channels=1, batch_size=16, augment="none", show_progress=False,
                        output=str(tmp_path_factory.mktemp("runs") / model))


# --- the acceptance test ------------------------------------------------------------------

@pytest.mark.slow
def test_the_heat_lies_on_the_quadrant_that_decides(striped_run: Path, probes: list,
                                                    tmp_path: Path, capsys) -> None:
    paths = [path for path, _, _ in probes]
    assert main(["explain", str(striped_run), *map(str, paths), "-o", str(tmp_path)]) == 0
    printed = capsys.readouterr().out.splitlines()
    index = json.loads((tmp_path / INDEX_FILE).read_text())
    assert len(index["overlays"]) == len(printed) == len(probes) and index["skipped"] == []
    found = 0
    for overlay, (path, kind, quadrant) in zip(index["overlays"], probes, strict=True):
        assert overlay["image"] == str(path) and overlay["rank"] == 1
        assert overlay["file"] == f"{path.stem}_top1_{overlay['label']}.png"
        with Image.open(tmp_path / overlay["file"]) as picture:
            assert picture.format == "PNG" and picture.size == (128, 128)
            heat = _hotness(np.asarray(picture.convert("RGB")))
        side = heat.shape[0] // 2
        row, column = quadrant
        inside = heat[row * side:(row + 1) * side, column * side:(column + 1) * side].sum()
        peak = np.unravel_index(heat.argmax(), heat.shape)
        right = overlay["label"] == kind and overlay["probability"] > 0.5
        # A quarter of the heat would be chance; the peak must be there too.
        found += right and inside / heat.sum() > 0.5 and (peak[0] // side, peak[1] // side) \
            == quadrant
    assert found >= len(probes) - 1, f"{found} of {len(probes)} overlays hot on their quadrant"


def _hotness(rgb: np.ndarray) -> np.ndarray:
    """How red an overlay pixel is: the image is gray, so red minus blue is the colour map's
    alone, positive over the upper half of jet's range."""
    return np.clip(rgb[..., 0].astype(np.float64) - rgb[..., 2], 0, None)


@pytest.mark.slow
def test_top_classes_and_their_probabilities(striped_run: Path, probes: list,
                                             tmp_path: Path) -> None:
    path = probes[0][0]
    result = imgcls.explain(striped_run, [path], tmp_path, top=3)
    assert [overlay.rank for overlay in result.overlays] == [1, 2, 3]
    assert sorted(overlay.label for overlay in result.overlays) == sorted(CLASSES)
    probabilities = [overlay.probability for overlay in result.overlays]
    assert probabilities == sorted(probabilities, reverse=True)
    assert sum(probabilities) == pytest.approx(1, abs=1e-4)
    # The Predictor's answer (classes past the first may tie at a probability of 0).
    assert imgcls.load(striped_run).predict([path])[0].label == result.overlays[0].label
    for overlay in result.overlays:
        with Image.open(tmp_path / overlay.file) as picture:
            assert picture.format == "PNG"


@pytest.mark.slow
def test_a_bad_image_is_named_and_skipped(striped_run: Path, probes: list, tmp_path: Path,
                                          capsys) -> None:
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    missing = tmp_path / "missing.jpg"
    good = probes[0][0]
    output = tmp_path / "out"
    assert main(["explain", str(striped_run), str(text), str(good), str(missing),
                 "-o", str(output)]) == 1
    captured = capsys.readouterr()
    assert f"skipped {text}" in captured.err and f"skipped {missing}" in captured.err
    assert "Traceback" not in captured.err
    index = json.loads((output / INDEX_FILE).read_text())
    assert [item["image"] for item in index["skipped"]] == [str(text), str(missing)]
    assert [item["image"] for item in index["overlays"]] == [str(good)]
    assert sorted(p.name for p in output.glob("*.png")) == [index["overlays"][0]["file"]]


def test_a_missing_run_is_one_line(tmp_path: Path, capsys) -> None:
    assert main(["explain", str(tmp_path / "nowhere"), "x.png", "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("imgcls: error:") and err.count("\n") == 1
    assert main(["explain", "model.onnx", "x.png", "-o", str(tmp_path)]) == 2
    assert "ONNX" in capsys.readouterr().err


# --- the layer and the maps ---------------------------------------------------------------

def _leaf_order(model: nn.Module, image: torch.Tensor) -> list[tuple[str, nn.Module, tuple]]:
    """(name, module, output shape) of every module, in the order their calls finished."""
    calls: list[tuple[str, nn.Module, tuple]] = []
    handles = [module.register_forward_hook(
        lambda m, _i, out, name=name: calls.append((name, m, tuple(out.shape))))
        for name, module in model.named_modules() if name]
    with torch.no_grad():
        model(image)
    for handle in handles:
        handle.remove()
    return calls


@pytest.mark.slow
def test_every_network_names_its_last_spatial_map() -> None:
    """For every registered network at 32 px: the registry's cam_layer returns a 4-D map and
    no convolution runs after it (checked by hooks), and the layer explained has a map larger
    than one pixel (VGG's five pools leave 1x1: the 2x2 map before the last pool is used)."""
    for name in list_models():
        model = create_model(name, num_classes=3, in_channels=3, image_size=SIDE, width=0.25)
        calls = _leaf_order(model.eval(), torch.zeros(1, 3, SIDE, SIDE))
        layer = get_spec(name).cam_layer
        last = max(i for i, (called, _, _) in enumerate(calls) if called == layer)
        assert len(calls[last][2]) == 4, name
        later = [called for called, module, _ in calls[last + 1:]
                 if isinstance(module, nn.Conv2d)]
        assert later == [], f"{name}: convolutions after {layer}: {later}"

        explainer = Explainer.for_network(model, COLOUR, name, (3, SIDE, SIDE))
        explained = [shape for called, _, shape in calls if called == explainer.layer][-1]
        assert min(explained[-2:]) > 1, f"{name}: {explainer.layer} gives {explained}"
        assert (explainer.layer == layer) == (min(calls[last][2][-2:]) > 1), name
        maps = explainer.heat_maps(torch.zeros(2, 3, SIDE, SIDE, dtype=torch.uint8),
                                   torch.tensor([0, 2]))
        assert maps.shape == (2, SIDE, SIDE), name


def test_a_one_pixel_map_steps_back_to_a_larger_one() -> None:
    features = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 4 px -> 2
        nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))  # 2 px -> 1
    net = nn.Sequential(OrderedDict(features=features, pool=nn.AdaptiveAvgPool2d(1),
                                    flatten=nn.Flatten(), fc=nn.Linear(4, 2)))
    assert spatial_layer(net, "features", (1, 4, 4)) == "features.4"  # the 2x2 ReLU
    assert spatial_layer(net, "features", (1, 8, 8)) == "features"  # 2x2 after the pools
    assert spatial_layer(net, "features.5", (1, 4, 4)) == "features.5"  # nothing larger


def test_maps_are_unit_scaled_at_the_input_size() -> None:
    torch.manual_seed(0)
    model = create_model("lenet5", num_classes=4, in_channels=1, image_size=28)
    explainer = Explainer.for_network(model.eval(), GRAY, "lenet5", (1, 28, 28))
    images = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    explanation = explainer.explain(images, top=2)
    assert explanation.heat_maps.shape == (5, 2, 28, 28)
    assert explanation.heat_maps.min() >= 0 and explanation.heat_maps.max() <= 1
    assert (explanation.classes == explanation.probabilities.topk(2).indices).all()
    # One class per image, as the report asks: the same maps as explain()'s.
    again = explainer.heat_maps(images, explanation.classes[:, 0])
    assert torch.allclose(again, explanation.heat_maps[:, 0], atol=1e-5)
    assert explainer.explain(images, top=9).classes.shape == (5, 4)  # at most K


def test_the_flip_average_is_not_what_is_explained() -> None:
    """Under --tta hflip the layer runs for the mirror too (captum, given the averaged model,
    would keep the mirror's map: 0.58 off here); the map explained is the image's own."""
    torch.manual_seed(0)
    options = {"num_classes": 3, "in_channels": 1, "image_size": 32, "width": 0.25}
    plain = create_model("vgg_small", **options)
    averaged = create_model("vgg_small", **options, tta="hflip")
    averaged.load_state_dict(plain.state_dict())
    images = torch.randint(0, 256, (3, 1, 32, 32), dtype=torch.uint8)
    classes = torch.tensor([0, 1, 2])
    maps = [Explainer.for_network(model.eval(), GRAY, "vgg_small", (1, 32, 32))
            .heat_maps(images, classes) for model in (plain, averaged)]
    assert maps[0].amax() == 1 and torch.allclose(maps[0], maps[1], atol=1e-5)


def test_unit_scale_and_overlays() -> None:
    maps = torch.tensor([[[0.0, 2.0], [1.0, 4.0]], [[-1.0, -2.0], [0.0, 0.0]]])
    assert unit_scale(maps).tolist() == [[[0.0, 0.5], [0.25, 1.0]], [[0.0, 0.0], [0.0, 0.0]]]
    gray = torch.full((1, 4, 4), 100, dtype=torch.uint8)
    heat = torch.zeros(4, 4)
    heat[0, 0] = 1.0
    pixels = overlay_pixels(gray, heat)
    assert pixels.shape == (4, 4, 3) and pixels.dtype == np.uint8
    assert pixels[0, 0, 0] > pixels[0, 0, 2] and pixels[3, 3, 2] > pixels[3, 3, 0]  # hot, cold
    rgb = torch.zeros((3, 40, 50), dtype=torch.uint8)
    with Image.open(io.BytesIO(overlay_png(rgb, torch.zeros(40, 50)))) as picture:
        assert picture.size == (200, 160)  # enlarged 4x: the shorter side reaches 128


# --- the report ---------------------------------------------------------------------------

def _figures(html: str, kind: str) -> list[str]:
    """The data-index of each <figure class="kind">, in page order."""
    return re.findall(rf'<figure class="{kind}" data-index="(\d+)"', html)


def test_the_report_shows_the_mistakes_heat_maps(tmp_path: Path) -> None:
    torch.manual_seed(0)
    names = ["a", "b", "c"]
    labels = np.arange(30) % 3
    probabilities = np.full((30, 3), 0.1)
    probabilities[np.arange(30), (labels + (np.arange(30) < 27)) % 3] = 0.8  # 27 wrong
    images = torch.randint(0, 256, (30, 1, 28, 28), dtype=torch.uint8)
    model = create_model("lenet5", num_classes=3, in_channels=1, image_size=28).eval()
    options = {"probabilities": probabilities, "labels": labels, "class_names": names,
               "item_ids": [f"i{n}" for n in range(30)], "images": images,
               "metrics": compute_metrics(labels, probabilities, names)}
    report = write_report(tmp_path / "cam", **options,
                          explainer=Explainer.for_network(model, GRAY, "lenet5", (1, 28, 28)))
    html = report.read_text()
    shown = _figures(html, "mistake")
    assert len(shown) == 24 and _figures(html, "cam") == shown  # beside them, same order
    assert 'id="mistakes-cam"' in html and "Grad-CAM (features)" in html
    sources = re.findall(r'<figure class="cam"[^>]*>\s*<img src="([^"]+)"', html)
    assert len(sources) == 24 and all(s.startswith("data:image/png;base64,") for s in sources)
    with Image.open(io.BytesIO(base64.b64decode(sources[0].split(",", 1)[1]))) as picture:
        assert picture.mode == "RGB" and picture.size == (28, 28)
    plain = write_report(tmp_path / "plain", **options).read_text()
    assert _figures(plain, "cam") == [] and "mistakes-cam" not in plain


@pytest.mark.slow
def test_training_and_eval_reports_show_them(digits_run: Path, tmp_path: Path) -> None:
    trained = (digits_run / "report.html").read_text()
    assert _figures(trained, "cam") == _figures(trained, "mistake") != []
    report = tmp_path / "eval.html"
    assert main(["eval", str(digits_run), "--data", "digits", "--report", str(report)]) == 0
    evaluated = report.read_text()
    assert _figures(evaluated, "cam") == _figures(evaluated, "mistake") != []
