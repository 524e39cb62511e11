"""Calibrated probabilities and "none of my classes" on every prediction path: the torch
Predictor, `imgcls predict`, an exported ONNX file, REST v1 and KServe v2 (the phone page is
in tests/webapp). References: the raw network in a plain torch forward pass."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from trustfiles import rejecting_all, with_trust

from imgcls.cli import main
from imgcls.data.normalize import Normalizer
from imgcls.data.sources import load_source
from imgcls.export.writers import export_model
from imgcls.modelfile.artifact import build_network, read_card, read_weights
from imgcls.predict.predictor import Predictor
from imgcls.serve import ServeSettings, create_app


@pytest.fixture(scope="module")
def digit_images() -> torch.Tensor:
    return load_source("digits", channels=1, image_size=32).images[:64]


@pytest.fixture(scope="module")
def digit_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("png") / "digit.png"
    Image.fromarray(load_source("digits").images[5, 0].numpy()).save(path)
    return path


@pytest.fixture(scope="module")
def rejecting(digits_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return rejecting_all(digits_run / "model.safetensors",
                         tmp_path_factory.mktemp("rejecting") / "model.safetensors")


@pytest.fixture(scope="module")
def earlier(digits_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same weights in a file an imgcls before the trust record would have written."""
    return with_trust(digits_run / "model.safetensors",
                      tmp_path_factory.mktemp("earlier") / "model.safetensors", None)


def raw_logits(model_file: Path, images: torch.Tensor) -> torch.Tensor:
    """The trained network's logits, with no temperature: a plain forward pass."""
    card = read_card(model_file)
    network = build_network(card)
    network.load_state_dict(read_weights(model_file))
    with torch.no_grad():
        return network.eval()(Normalizer(card.normalization)(images))


def test_the_run_records_its_trust(digits_run: Path) -> None:
    trust = read_card(digits_run).trust
    assert trust is not None and trust.score == "energy" and trust.keep == 0.95
    assert trust.fitted["split"] == "val" and trust.fitted["images"] > 0
    assert trust.fitted["nll_after"] <= trust.fitted["nll_before"]
    metrics = json.loads((digits_run / "metrics.json").read_text())
    assert metrics["trust"]["temperature"] == pytest.approx(trust.temperature)


def test_probabilities_are_the_network_over_its_temperature(digits_run: Path,
                                                            digit_images: torch.Tensor) -> None:
    trust = read_card(digits_run).trust
    logits = raw_logits(digits_run / "model.safetensors", digit_images)
    found = Predictor(digits_run, device="cpu").outputs(digit_images)
    torch.testing.assert_close(found.probabilities, (logits / trust.temperature).softmax(1),
                               atol=1e-5, rtol=1e-4)
    # The network's own energy score: of the logits as trained (not the calibrated ones),
    # at the card's energy temperature.
    torch.testing.assert_close(found.familiarity, (logits / trust.energy_temperature)
                               .logsumexp(1), atol=1e-4, rtol=1e-5)


def test_the_card_threshold_decides(digits_run: Path, digit_images: torch.Tensor) -> None:
    predictor = Predictor(digits_run, device="cpu")
    threshold = predictor.card.trust.threshold
    arrays = [image[0].numpy() for image in digit_images]
    answers = predictor.predict(arrays)
    familiarity = predictor.outputs(digit_images).familiarity.numpy()
    assert [answer.unknown for answer in answers] == list(familiarity < threshold)
    for answer in answers:
        assert answer.label == ("unknown" if answer.unknown else answer.topk[0]["label"])
        assert answer.threshold == threshold


def test_an_earlier_file_answers_as_before(earlier: Path, digit_images: torch.Tensor) -> None:
    predictor = Predictor(earlier, device="cpu")
    expected = raw_logits(earlier, digit_images).softmax(1)
    torch.testing.assert_close(predictor.probabilities(digit_images), expected,
                               atol=1e-5, rtol=1e-4)
    answer = predictor.predict(digit_images[0, 0].numpy())[0].to_dict()
    assert set(answer) == {"input", "label", "score", "topk"}


def test_predict_cli_says_unknown(rejecting: Path, digit_png: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", str(rejecting), str(digit_png), "--format", "json",
                 "--backend", "torch"]) == 0
    answer = json.loads(capsys.readouterr().out)[0]
    assert answer["label"] == "unknown" and answer["unknown"] is True
    assert answer["familiarity"] < answer["threshold"] == 1e9
    assert answer["topk"][0]["label"] != "unknown"  # the closest classes stay listed
    assert main(["predict", str(rejecting), str(digit_png), "--format", "csv",
                 "--reject-below", "off"]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header == "input,label,score,topk,unknown,familiarity"
    assert row.split(",")[1] != "unknown" and row.split(",")[4] == "0"


def test_a_bad_reject_below_is_a_usage_error(rejecting: Path, digit_png: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", str(rejecting), str(digit_png), "--reject-below", "sometimes"]) == 2
    assert "reject_below must be a number, 'card' or 'off'" in capsys.readouterr().err


def test_onnx_file_says_unknown_like_the_predictor(rejecting: Path, digit_png: Path,
                                                   tmp_path: Path) -> None:
    exported = export_model(rejecting, "onnx", tmp_path / "model.onnx")
    onnx_answer = Predictor(exported).predict(digit_png)[0]
    torch_answer = Predictor(rejecting, device="cpu").predict(digit_png)[0]
    assert onnx_answer.unknown and onnx_answer.label == "unknown"
    assert onnx_answer.familiarity == pytest.approx(torch_answer.familiarity, abs=1e-4)
    assert not Predictor(exported).predict(digit_png, reject_below="off")[0].unknown


def _png_bytes(path: Path) -> bytes:
    return path.read_bytes()


def test_rest_v1_says_unknown(rejecting: Path, digit_png: Path) -> None:
    with TestClient(create_app(rejecting, ServeSettings())) as client:
        files = [("file", ("digit.png", _png_bytes(digit_png), "image/png"))]
        answer = client.post("/v1/predict", files=files).json()["predictions"][0]
        assert answer["label"] == "unknown" and answer["unknown"] is True
        assert answer["familiarity"] < answer["threshold"]
        kept = client.post("/v1/predict?reject_below=off", files=files).json()
        assert kept["predictions"][0]["unknown"] is False
        bad = client.post("/v1/predict?reject_below=often", files=files)
        assert bad.status_code == 422 and "reject_below" in bad.json()["error"]["message"]


def _v2_body(path: Path, **parameters: object) -> dict:
    body: dict = {"inputs": [{"name": "images", "datatype": "BYTES", "shape": [1],
                              "data": [base64.b64encode(_png_bytes(path)).decode()]}]}
    if parameters:
        body["parameters"] = parameters
    return body


def test_kserve_v2_says_unknown(rejecting: Path, digit_png: Path) -> None:
    with TestClient(create_app(rejecting, ServeSettings(model_name="m"))) as client:
        outputs = {o["name"]: o for o in
                   client.post("/v2/models/m/infer", json=_v2_body(digit_png)).json()["outputs"]}
        assert outputs["labels"]["data"] == ["unknown"]
        assert outputs["unknown"] == {"name": "unknown", "datatype": "BOOL", "shape": [1],
                                      "data": [True]}
        assert outputs["familiarity"]["datatype"] == "FP32"
        kept = client.post("/v2/models/m/infer", json=_v2_body(digit_png, reject_below="off"))
        assert {o["name"]: o["data"] for o in kept.json()["outputs"]}["unknown"] == [False]
        names = [o["name"] for o in client.get("/v2/models/m").json()["outputs"]]
        assert names == ["probabilities", "labels", "familiarity", "unknown"]


def test_kserve_v2_of_an_earlier_file_is_unchanged(earlier: Path, digit_png: Path) -> None:
    with TestClient(create_app(earlier, ServeSettings(model_name="m"))) as client:
        answer = client.post("/v2/models/m/infer", json=_v2_body(digit_png)).json()
        assert [o["name"] for o in answer["outputs"]] == ["probabilities", "labels"]
        v1 = client.post("/v1/predict", content=_png_bytes(digit_png),
                         headers={"Content-Type": "image/png"}).json()["predictions"][0]
        assert set(v1) == {"input", "label", "score", "topk"}


def test_noise_is_less_familiar_than_digits(digits_run: Path,
                                            digit_images: torch.Tensor) -> None:
    """What the score is for: images of none of the classes score lower. The noise is
    smooth (blurred), as textures and backgrounds are: this 3-epoch lenet5's energy does not
    separate white pixel noise from digits (median 3.78 against 3.76 at its third epoch), a
    known blind spot of energy scores on small networks, not what a user's photos are."""
    from scipy.ndimage import gaussian_filter

    predictor = Predictor(digits_run, device="cpu")
    blurred = gaussian_filter(np.random.default_rng(0).normal(128, 60, (64, 1, 32, 32)),
                              sigma=(0, 0, 2, 2))
    noise = torch.from_numpy(np.clip(blurred, 0, 255).astype(np.uint8))
    digits = predictor.outputs(digit_images).familiarity
    assert predictor.outputs(noise).familiarity.median() < digits.median()
