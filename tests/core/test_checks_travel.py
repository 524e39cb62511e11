"""Checks that travel with a model file (issue 24): int8 weights quantized so that no CPU's
integer kernels can saturate, a check that records the scheme and the CPU kind it ran on, and
a record from a CPU of another kind re-checked on load, or refused with fp32 answering; the
cached fp32 export a torch-free prediction runs is checked again on a CPU of another kind."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from imgcls.evaluation.int8_export import export_int8
from imgcls.export.cache import BackendCache, cache_for
from imgcls.export.int8_record import MIN_AGREEMENT, read_check_images, write_check_images
from imgcls.export.quantize import SCHEME
from imgcls.predict.backends.timing import machine_key
from imgcls.predict.predictor import Predictor
from imgcls.utils.cpus import cpu_kind

OTHER_KIND = "x86_64 avx2 (another machine)"
# onnxruntime's x86-64 kernels without VNNI add uint8 x int8 products in pairs into signed
# 16-bit lanes: 2 * 255 * |w| must stay below 32,768.
SATURATION_FREE_WEIGHT = 64


@pytest.fixture(scope="module")
def int8_run(digits_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the digits run whose model file has a passed int8 export."""
    run = tmp_path_factory.mktemp("int8") / "run"
    run.mkdir()
    shutil.copy(digits_run / "model.safetensors", run / "model.safetensors")
    check, written = export_int8(run, data="digits", data_dir=None, max_accuracy_drop=1.0)
    assert written is not None, check.describe()
    return run


@pytest.fixture
def run(int8_run: Path, tmp_path: Path) -> Path:
    """The int8 run, copied so a test may change its record."""
    copy = tmp_path / "run"
    shutil.copytree(int8_run, copy)
    return copy


def cache(run: Path) -> BackendCache:
    return cache_for(run / "model.safetensors")


def edit_record(run: Path, **changes: object) -> None:
    path = cache(run).path("int8.json")
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.mark.slow
def test_int8_weights_cannot_saturate_and_the_check_says_how_and_where(int8_run: Path) -> None:
    record = json.loads(cache(int8_run).path("int8.json").read_text())
    assert record["scheme"] == SCHEME and record["cpu_kind"] == cpu_kind()
    assert record["passed"] and record["top1_agreement"] >= 0.98  # on this machine's CPU
    assert record["min_agreement"] == MIN_AGREEMENT
    graph = onnx.load(cache(int8_run).path("int8.onnx")).graph
    initializers = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    weights = [initializers[node.input[0]] for node in graph.node
               if node.op_type == "DequantizeLinear" and node.input[0] in initializers
               and initializers[node.input[0]].dtype == np.int8]
    assert len(weights) >= 5  # LeNet-5: two convolutions and three fully connected layers
    largest = max(int(np.abs(weight.astype(np.int32)).max()) for weight in weights)
    assert largest <= SATURATION_FREE_WEIGHT
    assert 2 * 255 * largest < 2 ** 15
    stored = read_check_images(cache(int8_run).path("int8.check.npz"))
    assert stored is not None and len(stored.labels) == record["samples"] == 180
    assert stored.images.dtype == np.uint8 and stored.fp32.shape == (180, 10)


@pytest.mark.slow
def test_a_record_from_another_cpu_kind_is_rechecked_once_on_load(
        run: Path, caplog: pytest.LogCaptureFixture) -> None:
    edit_record(run, cpu_kind=OTHER_KIND)
    with caplog.at_level(logging.WARNING, logger="imgcls"):
        predictor = Predictor(run, backend="onnx-int8")
    assert predictor.backend_name == "onnx-int8"
    assert f"re-checked on this CPU ({cpu_kind()})" in caplog.text
    record = json.loads(cache(run).path("int8.json").read_text())
    assert record["cpu_kind"] == OTHER_KIND  # the export's own check is kept as it was
    recheck = record["rechecks"][cpu_kind()]
    assert recheck["passed"] and recheck["samples"] == 180 and recheck["cpu_kind"] == cpu_kind()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="imgcls"):
        Predictor(run, backend="onnx-int8")
    assert "re-checked" not in caplog.text  # once per CPU kind, then read from the record


@pytest.mark.slow
def test_an_int8_model_that_fails_its_recheck_is_refused_and_fp32_answers(
        run: Path, caplog: pytest.LogCaptureFixture) -> None:
    edit_record(run, cpu_kind=OTHER_KIND)
    stored = read_check_images(cache(run).path("int8.check.npz"))
    assert stored is not None
    # fp32's recorded answers moved one class on: int8, which still answers as fp32 does,
    # now agrees on no image, as a CPU whose kernels clip would make it look.
    moved = np.roll(stored.fp32, 1, axis=1)
    write_check_images(cache(run).path("int8.check.npz"),
                       type(stored)(stored.images, stored.labels, moved))
    with caplog.at_level(logging.WARNING, logger="imgcls"):
        predictor = Predictor(run, backend="onnx-int8")
    assert predictor.backend_name == "onnx"  # the fp32 export
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert "int8 model refused on this CPU, predicting in fp32" in lines[0]
    assert OTHER_KIND in lines[0] and "agreement" in lines[0]
    images = torch.from_numpy(stored.images[:8])
    fp32 = Predictor(run).probabilities(images).numpy()
    assert np.abs(predictor.probabilities(images).numpy() - fp32).max() < 1e-4
    assert not json.loads(cache(run).path("int8.json").read_text())["rechecks"][cpu_kind()][
        "passed"]
    auto = Predictor(run, backend="auto", batch_sizes=(1,))
    timings = json.loads(cache(run).path("timings.json").read_text())
    assert "onnx-int8" not in timings[machine_key(torch.get_num_threads())]
    assert auto.backend.choice(1) != "onnx-int8"


@pytest.mark.slow
def test_an_int8_record_without_a_cpu_or_check_images_is_refused(
        run: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An export by an earlier imgcls: 8-bit weights, no CPU recorded, nothing to re-check on."""
    path = cache(run).path("int8.json")
    record = json.loads(path.read_text())
    for key in ("scheme", "cpu_kind", "min_agreement", "rechecks"):
        record.pop(key)
    path.write_text(json.dumps(record))
    cache(run).path("int8.check.npz").unlink()
    with caplog.at_level(logging.WARNING, logger="imgcls"):
        predictor = Predictor(run, backend="onnx-int8")
    assert predictor.backend_name == "onnx"
    assert "no stored check images" in caplog.text and "export MODEL --quantize int8" in caplog.text


@pytest.mark.slow
def test_a_cached_fp32_export_checked_on_another_cpu_kind_is_checked_here_without_torch(
        digits_run: Path, tmp_path: Path) -> None:
    from imgcls.predict.backends.cached_onnx import cached_onnx

    run = tmp_path / "run"
    shutil.copytree(digits_run, run)
    model = run / "model.safetensors"
    checked = cache(run).path("fp32.checked.json")
    assert json.loads(checked.read_text())["cpu_kinds"] == [cpu_kind()]  # training checked it
    checked.write_text(json.dumps({"cpu_kinds": [OTHER_KIND]}))
    assert cached_onnx(model, "onnx", (1,), threads=1) == cache(run).path("fp32.onnx")
    assert json.loads(checked.read_text())["cpu_kinds"] == [OTHER_KIND, cpu_kind()]

    checked.write_text(json.dumps({"cpu_kinds": [OTHER_KIND]}))
    reference = cache(run).path("fp32.check.npz")
    with np.load(reference) as stored:
        pixels, probabilities = stored["pixels"], stored["probabilities"]
    np.savez(reference, pixels=pixels, probabilities=np.roll(probabilities, 1, axis=1))
    for backend in ("onnx", "auto"):  # this CPU disagrees with the stored answers
        assert cached_onnx(model, backend, (1,), threads=1) is None
    assert OTHER_KIND in checked.read_text() and cpu_kind() not in checked.read_text()


@pytest.mark.slow
def test_an_int8_file_exported_on_its_own_carries_its_check_and_refuses_a_failing_cpu(
        int8_run: Path, tmp_path: Path) -> None:
    from imgcls.errors import UserError
    from imgcls.export.int8_embedded import METADATA_KEY

    file = tmp_path / "digits.int8.onnx"
    check, written = export_int8(int8_run, data="digits", data_dir=None, max_accuracy_drop=1.0,
                                 output=file)
    assert written == file and check.passed
    assert Predictor(file).backend_name == "onnxruntime"  # this CPU

    def rewrite(change_check: dict, roll: int) -> Path:
        import base64
        import io

        model = onnx.load(str(file))
        prop = next(p for p in model.metadata_props if p.key == METADATA_KEY)
        document = json.loads(prop.value)
        document["check"].update(change_check)
        with np.load(io.BytesIO(base64.b64decode(document["images"]))) as stored:
            buffer = io.BytesIO()
            np.savez(buffer, images=stored["images"], labels=stored["labels"],
                     fp32=np.roll(stored["fp32"], roll, axis=1))
        document["images"] = base64.b64encode(buffer.getvalue()).decode()
        prop.value = json.dumps(document)
        target = tmp_path / f"rewritten-{roll}.onnx"
        onnx.save(model, str(target))
        return target

    assert Predictor(rewrite({"cpu_kind": OTHER_KIND}, 0)).class_names  # re-checked: holds
    refused = rewrite({"cpu_kind": OTHER_KIND}, 1)
    with pytest.raises(UserError, match="int8 model refused on this CPU") as error:
        Predictor(refused)
    assert "\n" not in str(error.value) and OTHER_KIND in str(error.value)
    assert Predictor(rewrite({}, 1)).class_names  # checked on this very kind: trusted


@pytest.mark.slow
def test_a_damaged_check_is_a_refusal_not_a_crash(int8_run: Path, run: Path, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """Check images cut short in the cache, or an -o file whose embedded check is not JSON or
    whose images are not an .npz: each a clear refusal, fp32 answering where there is one."""
    from imgcls.errors import UserError
    from imgcls.export.int8_embedded import METADATA_KEY

    edit_record(run, cpu_kind=OTHER_KIND)
    images = cache(run).path("int8.check.npz")
    images.write_bytes(images.read_bytes()[:100])  # truncated
    with caplog.at_level(logging.WARNING, logger="imgcls"):
        assert Predictor(run, backend="onnx-int8").backend_name == "onnx"
    assert "no stored check images" in caplog.text

    file = tmp_path / "digits.int8.onnx"
    export_int8(int8_run, data="digits", data_dir=None, max_accuracy_drop=1.0, output=file)
    for damaged in ("{not json", json.dumps({"check": {"cpu_kind": OTHER_KIND},
                                             "images": "bm90IGFuIG5weg=="})):
        model = onnx.load(str(file))
        next(p for p in model.metadata_props if p.key == METADATA_KEY).value = damaged
        onnx.save(model, str(tmp_path / "damaged.onnx"))
        with pytest.raises(UserError, match="its int8 check .imgcls_int8. cannot be read"):
            Predictor(tmp_path / "damaged.onnx")
