"""The model zoo: every registered model trains on small images, torchvision-based ones match
torchvision at ImageNet settings, and pretrained weights load where they fit.

Shape checks across many image sizes run on the meta device: shapes propagate, nothing is
computed, so even VGG-19 at 224 px costs nothing.
"""

from __future__ import annotations

import copy
import pickle
from urllib.error import URLError

import pytest
import safetensors.torch
import torch
import torchvision
from torch import nn

from imgcls.cli import main
from imgcls.errors import UserError
from imgcls.models import (
    count_parameters,
    create_model,
    freeze_backbone,
    get_spec,
    list_models,
    load_compatible,
    mflops,
    read_state_dict_file,
    speed,
    torchvision_state_dict,
)
from imgcls.models import pretrained as pretrained_module
from imgcls.models.layers import make_activation
from imgcls.models.registry import register

TORCHVISION_BASED = [name for name in list_models() if get_spec(name).torchvision_name]
# One model per family, for the tests of options every family implements, and the compact
# (small-image) variants of the papers.
ONE_PER_FAMILY = ["lenet5", "alexnet", "vgg11_bn", "resnet18", "densenet_bc",
                  "mobilenet_v3_small"]
COMPACT = ["resnet20", "resnet32", "resnet56", "densenet_bc_40", "densenet_bc_100",
           "alexnet_small"]


def _build(name: str, **options: object) -> nn.Module:
    options = {"num_classes": 10, "in_channels": 1, "image_size": 28, **options}
    return create_model(name, **options)


@pytest.mark.slow
@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32)])
@pytest.mark.parametrize("name", list_models())
def test_model_trains_on_small_images(name: str, channels: int, size: int) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_channels=channels, image_size=size)
    images = torch.randn(2, channels, size, size)

    logits = model(images)
    logits.logsumexp(dim=1).mean().backward()

    assert logits.shape == (2, 10)
    assert torch.isfinite(logits).all()
    for param_name, parameter in model.named_parameters():
        assert parameter.grad is not None, f"no gradient reaches {param_name}"
        assert torch.isfinite(parameter.grad).all(), f"non-finite gradient in {param_name}"


@pytest.mark.slow
@pytest.mark.parametrize("size", [28, 32, 45, 64, 65, 100, 224])
@pytest.mark.parametrize("name", list_models())
def test_output_shape_for_any_image_size(name: str, size: int) -> None:
    with torch.device("meta"):
        model = create_model(name, num_classes=7, in_channels=3, image_size=size).eval()
        logits = model(torch.empty(1, 3, size, size))
    assert logits.shape == (1, 7)


@pytest.mark.slow
@pytest.mark.parametrize("name", TORCHVISION_BASED)
def test_imagenet_configuration_is_torchvisions(name: str) -> None:
    with torch.device("meta"):
        ours = create_model(name, num_classes=1000)
        theirs = torchvision.models.get_model(get_spec(name).torchvision_name, weights=None)
    assert count_parameters(ours) == count_parameters(theirs)
    our_shapes = {key: tensor.shape for key, tensor in ours.state_dict().items()}
    their_shapes = {key: tensor.shape for key, tensor in theirs.state_dict().items()}
    assert our_shapes == their_shapes


@pytest.mark.slow
def test_head_names_the_final_linear() -> None:
    for name in list_models():
        with torch.device("meta"):
            model = _build(name)
        head = model.get_submodule(get_spec(name).head)
        assert isinstance(head, nn.Linear) and head.out_features == 10, name


@pytest.mark.parametrize("activation", ["gelu", "silu", "tanh", "sigmoid", "leaky_relu"])
def test_activation_replaces_every_relu(activation: str) -> None:
    # The mobile networks' own activations go too (ReLU6, Hardswish; EfficientNet's SiLU),
    # not their squeeze-excitation gates.
    expected = type(make_activation(activation))
    for name in ONE_PER_FAMILY + ["densenet121", "mobilenet_v2", "efficientnet_b0"]:
        with torch.device("meta"):
            model = _build(name, activation=activation)
        kinds = {type(module) for module in model.modules()}
        assert not kinds & {nn.ReLU, nn.ReLU6, nn.Hardswish}, name
        assert expected in kinds, name
    with torch.device("meta"):
        gelu_efficientnet = _build("efficientnet_b0", activation="gelu")
    assert nn.SiLU not in {type(module) for module in gelu_efficientnet.modules()}


@pytest.mark.parametrize("training", [False, True])
def test_densenet_forward_follows_the_activation(monkeypatch, training: bool) -> None:
    # torchvision's DenseNet.forward calls F.relu itself; ours, and the training forward of
    # dense_train.py, must use the chosen activation.
    model = _build("densenet_bc_40", activation="gelu").train(training)

    def no_relu(*args: object, **kwargs: object) -> None:
        raise AssertionError("F.relu called")

    monkeypatch.setattr(torch.nn.functional, "relu", no_relu)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("name", ONE_PER_FAMILY + COMPACT + ["densenet121"])
def test_dropout_option_adds_dropout(name: str) -> None:
    with torch.device("meta"):
        model = _build(name, dropout=0.3)
        head = model.get_submodule(get_spec(name).head)
    assert any(isinstance(m, nn.Dropout) and m.p == 0.3 for m in model.modules())
    assert isinstance(head, nn.Linear)


@pytest.mark.slow
@pytest.mark.parametrize("name", ONE_PER_FAMILY + COMPACT + ["densenet121", "resnet50"])
def test_width_scales_the_model(name: str) -> None:
    with torch.device("meta"):
        narrow, full = _build(name, width=0.5), _build(name)
        logits = narrow.eval()(torch.empty(1, 1, 28, 28))
    assert count_parameters(narrow) < count_parameters(full)
    assert logits.shape == (1, 10)


# Parameters for 10 classes and 3 channels. ResNets: He et al. 2016, table 6 (option A
# shortcuts). DenseNet-BC-100 (k=12): 0.8M in Huang et al. 2017, table 2, 0.77M counted;
# DenseNet-BC-40 is not in the table: 0.176M counted, as its reference code builds it.
PAPER_PARAMETERS = {
    "resnet20": 0.27e6, "resnet32": 0.46e6, "resnet56": 0.85e6,
    "densenet_bc_100": 0.77e6, "densenet_bc_40": 0.176e6,
}


@pytest.mark.parametrize("name", sorted(PAPER_PARAMETERS))
def test_compact_variants_have_the_papers_parameter_counts(name: str) -> None:
    with torch.device("meta"):
        model = create_model(name, num_classes=10, in_channels=3, image_size=32)
    assert count_parameters(model) == pytest.approx(PAPER_PARAMETERS[name], rel=0.02)
    assert get_spec(name).compact


def test_resnet_cifar_has_6n_plus_2_weighted_layers() -> None:
    for name, n in (("resnet20", 3), ("resnet32", 5), ("resnet56", 9)):
        with torch.device("meta"):
            model = _build(name)
        weighted = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        assert len(weighted) == 6 * n + 2, name  # option A: the shortcuts have no convs


def test_densenet_bc_is_densenet_bc_100() -> None:
    torch.manual_seed(0)
    old_name = _build("densenet_bc").state_dict()
    torch.manual_seed(0)
    new_name = _build("densenet_bc_100").state_dict()
    assert old_name.keys() == new_name.keys()
    assert all(torch.equal(old_name[key], new_name[key]) for key in old_name)


def _torchvision_densenet(ours: nn.Module) -> nn.Module:
    """torchvision's own DenseNet, forward and all, holding a copy of `ours`'s weights."""
    features = ours.features
    blocks = [module for name, module in features.named_children() if "denseblock" in name]
    theirs = torchvision.models.DenseNet(
        growth_rate=blocks[0].denselayer1.conv2.out_channels,
        block_config=tuple(len(block) for block in blocks),
        num_init_features=features.conv0.out_channels,
        num_classes=ours.classifier.out_features,
    )
    theirs.features.conv0 = copy.deepcopy(features.conv0)
    theirs.features.pool0 = nn.Identity()
    theirs.load_state_dict(ours.state_dict())
    return theirs


def _densenet_pair(
    memory_format: torch.memory_format, dtype: torch.dtype
) -> tuple[nn.Module, nn.Module]:
    """densenet_bc_40 and torchvision's DenseNet with the same weights, BatchNorm weights away
    from 1 and 0 so that each one counts."""
    torch.manual_seed(0)
    ours = _build("densenet_bc_40")
    for module in ours.modules():
        if isinstance(module, nn.BatchNorm2d):
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.uniform_(module.bias, -0.5, 0.5)
    theirs = _torchvision_densenet(ours)
    return (ours.to(dtype).to(memory_format=memory_format),
            theirs.to(dtype).to(memory_format=memory_format))


@pytest.mark.slow
@pytest.mark.parametrize("memory_format,size", [
    (torch.contiguous_format, 28), (torch.channels_last, 28),
    (torch.contiguous_format, 30),  # 15x15 maps in the second transition: avg_pool2d's path
])
def test_densenet_training_forward_is_torchvisions(memory_format: torch.memory_format,
                                                  size: int) -> None:
    """dense_train.py normalizes each map once, never concatenates, and pools before a
    transition's 1x1 convolution (as a matrix product where the maps are even-sized): the same
    function as torchvision's forward. In float64, so that rounding (which flips a few ReLUs
    between any two fp32 implementations of this 40-layer net) does not hide a mistake:
    logits, gradients and running statistics over two steps, then eval-mode logits."""
    ours, theirs = _densenet_pair(memory_format, torch.float64)
    for _ in range(2):
        images = torch.randn(4, 1, size, size, dtype=torch.float64)
        images = images.contiguous(memory_format=memory_format)
        ours.zero_grad()
        theirs.zero_grad()
        our_logits, their_logits = ours(images), theirs(images)
        torch.testing.assert_close(our_logits, their_logits, rtol=1e-10, atol=1e-10)
        our_logits.square().sum().backward()
        their_logits.square().sum().backward()
        for (name, mine), other in zip(ours.named_parameters(), theirs.parameters(), strict=True):
            torch.testing.assert_close(mine.grad, other.grad, rtol=1e-8, atol=1e-10, msg=name)
    torch.testing.assert_close(ours.state_dict(), theirs.state_dict(), rtol=1e-10, atol=1e-12)
    ours.eval()
    theirs.eval()
    images = torch.randn(2, 1, size, size, dtype=torch.float64)
    images = images.contiguous(memory_format=memory_format)
    torch.testing.assert_close(ours(images), theirs(images), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_densenet_training_logits_match_torchvision_in_fp32(
    memory_format: torch.memory_format,
) -> None:
    ours, theirs = _densenet_pair(memory_format, torch.float32)
    images = torch.randn(8, 1, 28, 28).contiguous(memory_format=memory_format)
    torch.testing.assert_close(ours(images), theirs(images), rtol=1e-4, atol=1e-4)


def test_densenet_with_a_frozen_batch_norm_falls_back_to_torchvisions_forward() -> None:
    torch.manual_seed(0)
    ours = _build("densenet_bc_40")
    ours.features.denseblock2.denselayer3.norm1.eval()  # e.g. frozen by a fine-tuning recipe
    theirs = _torchvision_densenet(ours)
    theirs.features.denseblock2.denselayer3.norm1.eval()
    images = torch.randn(4, 1, 28, 28)
    torch.testing.assert_close(ours(images), theirs(images), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ONE_PER_FAMILY + COMPACT)
def test_tta_hflip_averages_the_mirror_in_eval_mode_only(name: str) -> None:
    torch.manual_seed(0)
    averaged = _build(name, tta="hflip")
    plain = _build(name)
    assert averaged.state_dict().keys() == plain.state_dict().keys(), "same weights file"
    plain.load_state_dict(averaged.state_dict())
    images = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        averaged.eval(), plain.eval()
        expected = (plain(images) + plain(images.flip(-1))) / 2
        torch.testing.assert_close(averaged(images), expected)
        assert not torch.allclose(expected, plain(images), rtol=1e-2, atol=0), "the mirror counts"
        # A frozen backbone trains with its head alone in train mode: one pass, no average.
        averaged.get_submodule(get_spec(name).head).train()
        plain.get_submodule(get_spec(name).head).train()
        torch.testing.assert_close(averaged(images), plain(images))
    copies = [copy.deepcopy(averaged), pickle.loads(pickle.dumps(averaged))]
    for model in copies + [averaged]:
        model.eval()
    with torch.no_grad():
        for model in copies:
            assert type(model) is type(averaged)
            torch.testing.assert_close(model(images), averaged(images))


def test_tta_takes_known_values_only() -> None:
    with pytest.raises(UserError, match="unknown test-time augmentation 'vflip'.*hflip"):
        _build("lenet5", tta="vflip")


def test_too_small_image_is_a_user_error() -> None:
    with pytest.raises(UserError, match="at least 28 px; got 16 — pass --image-size 28"):
        create_model("resnet18", num_classes=10, image_size=16)


@pytest.mark.parametrize(
    ("options", "message"),
    [({"num_classes": 1}, "at least 2 classes; got 1"),
     ({"in_channels": 0}, "at least 1 channel; got 0"),
     ({"activation": "swish"}, "unknown activation 'swish'"),
     ({"dropout": 1.0}, r"dropout must be in \[0, 1\); got 1.0")],
)
def test_bad_options_are_user_errors(options: dict[str, object], message: str) -> None:
    with pytest.raises(UserError, match=message):
        _build("lenet5", **options)


def test_unknown_model_names_a_close_match() -> None:
    with pytest.raises(UserError, match="did you mean 'resnet18'"):
        get_spec("resnet19")


def test_duplicate_registration_raises() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register(get_spec("lenet5"))


def _perturbed_torchvision_resnet18() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    source = torchvision.models.resnet18(weights=None).state_dict()
    return {
        key: tensor + 0.5 if tensor.is_floating_point() else tensor
        for key, tensor in source.items()
    }


@pytest.mark.parametrize("image_size", [224, 32])
def test_load_compatible_from_torchvision_keys(image_size: int) -> None:
    source = _perturbed_torchvision_resnet18()
    model = create_model("resnet18", num_classes=5, in_channels=1, image_size=image_size)

    report = load_compatible(model, source, head="fc", in_channels=1)

    loaded = model.state_dict()
    head = ["fc.weight", "fc.bias"]
    if image_size == 224:  # the ImageNet stem: conv1 differs only in its input channels
        assert report.adapted == ["conv1.weight"]
        assert set(report.skipped) == set(head)
        assert report.missing == head
        rgb_summed = source["conv1.weight"].sum(dim=1, keepdim=True)
        assert torch.allclose(loaded["conv1.weight"], rgb_summed)
    else:  # the 3x3 small-input stem cannot take a 7x7 kernel
        assert report.adapted == []
        assert set(report.skipped) == {"conv1.weight", *head}
        assert report.missing == ["conv1.weight", *head]
    assert len(report.loaded) == len(source) - 3
    for key in report.loaded:
        assert torch.equal(loaded[key], source[key]), key


def test_first_conv_adapts_to_more_channels() -> None:
    source = _perturbed_torchvision_resnet18()
    model = create_model("resnet18", num_classes=5, in_channels=4)
    report = load_compatible(model, source, head="fc", in_channels=4)
    weight = model.state_dict()["conv1.weight"]
    assert report.adapted == ["conv1.weight"]
    assert torch.allclose(weight[:, :3], source["conv1.weight"] * 0.75)
    assert torch.allclose(weight[:, 3], source["conv1.weight"][:, 0] * 0.75)


def test_load_compatible_rejects_another_architecture() -> None:
    model = _build("lenet5")
    with pytest.raises(UserError, match="another architecture"):
        load_compatible(model, {"layer9.weight": torch.zeros(3)}, head="fc", in_channels=1)


@pytest.mark.slow
def test_legacy_densenet_keys_load() -> None:
    model = _build("densenet_bc")
    source = {  # as torchvision's DenseNet checkpoints name them (without batch counters)
        key.replace("norm1.", "norm.1.").replace("conv2.", "conv.2."): tensor
        for key, tensor in model.state_dict().items()
        if not key.endswith("num_batches_tracked")
    }
    assert "features.denseblock1.denselayer1.norm.1.weight" in source
    report = load_compatible(model, source, head="classifier", in_channels=3)
    assert set(report.skipped) == {"classifier.weight", "classifier.bias"}


def test_freeze_backbone_leaves_only_the_head() -> None:
    model = _build("resnet18")
    trainable = freeze_backbone(model, "fc")
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    assert names == ["fc.weight", "fc.bias"]
    assert trainable == 512 * 10 + 10


def test_read_state_dict_files(tmp_path) -> None:
    tensors = {"a.weight": torch.ones(2, 3), "a.bias": torch.zeros(2)}
    safetensors.torch.save_file(tensors, tmp_path / "w.safetensors")
    torch.save(tensors, tmp_path / "w.pth")
    for file_name in ("w.safetensors", "w.pth"):
        read = read_state_dict_file(tmp_path / file_name)
        assert read.keys() == tensors.keys() and torch.equal(read["a.weight"], tensors["a.weight"])


class _OpensAFile:
    """Unpickled, it calls open(path, "w"): the file appearing means the pickle ran."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (open, (self.path, "w"))


def test_read_state_dict_file_refuses_pickled_objects_and_missing_files(tmp_path) -> None:
    # A well-formed torch.save file (so no format error can stand in for the refusal) whose
    # pickle would run code if loaded without weights_only.
    canary = tmp_path / "the-pickle-ran"
    torch.save({"a.weight": _OpensAFile(str(canary))}, tmp_path / "evil.pt")
    with pytest.raises(UserError, match="not a plain state dict") as caught:
        read_state_dict_file(tmp_path / "evil.pt")
    assert isinstance(caught.value.__cause__, pickle.UnpicklingError)
    assert "Weights only load failed" in str(caught.value.__cause__)
    assert not canary.exists()
    with pytest.raises(UserError, match="not found"):
        read_state_dict_file(tmp_path / "absent.pth")


def test_torchvision_state_dict_offline_and_unavailable(monkeypatch, tmp_path) -> None:
    def offline(url: str, destination: str, **options: object) -> None:
        raise URLError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache: it downloads
    monkeypatch.setattr(pretrained_module.torch.hub, "download_url_to_file", offline)
    with pytest.raises(UserError, match="--pretrained PATH"):
        torchvision_state_dict(get_spec("resnet18"))
    with pytest.raises(UserError, match="lenet5 has no ImageNet weights"):
        torchvision_state_dict(get_spec("lenet5"))


def test_mflops_grow_with_image_size() -> None:
    model = _build("lenet5", image_size=56)
    small, large = mflops(model, 1, 28), mflops(model, 1, 56)
    assert 0 < small < large
    assert model.training  # restored after counting


def test_cpu_practical_rule() -> None:
    # An epoch of 60,000 images at 3x the forward FLOPs and ASSUMED_CPU_GFLOPS, under 5 min.
    assert speed.estimated_epoch_seconds(50.0, 60_000, gflops=50.0) == pytest.approx(180.0)
    assert speed.cpu_practical(_mflops_at_28("lenet5"))
    assert speed.cpu_practical(_mflops_at_28("resnet20"))
    assert not speed.cpu_practical(_mflops_at_28("resnet18"))


def _mflops_at_28(name: str) -> float:
    return mflops(_build(name), 1, 28)


def test_models_lists_size_cost_and_cpu_practicality(capsys: pytest.CaptureFixture) -> None:
    code = main(["models", "--image-size", "28", "--channels", "1",
                 "--models", "lenet5,resnet18,resnet20"])
    out = capsys.readouterr().out
    assert code == 0
    for column in ("parameters", "MFLOPs", "epoch (est.)", "CPU-practical", "compact"):
        assert column in out
    rows = {line.split()[1]: line for line in out.splitlines() if line.startswith("│")}
    assert set(rows) == {"lenet5", "resnet18", "resnet20"}
    assert "269,434" in rows["resnet20"]  # parameters for 1 channel, 10 classes
    cells = {name: [cell.strip() for cell in row.split("│")] for name, row in rows.items()}
    practical = {name: cell[6] for name, cell in cells.items()}
    assert practical == {"lenet5": "yes", "resnet18": "no", "resnet20": "yes"}


def test_models_leaves_out_models_too_big_for_the_image(capsys: pytest.CaptureFixture) -> None:
    assert main(["models", "--image-size", "16", "--models", "resnet18,resnet20"]) == 0
    out = capsys.readouterr().out
    assert "left out at 16 px: resnet18 (needs 28 px)" in out
    assert "resnet20" in out


def test_models_bench_measures_on_this_machine(capsys: pytest.CaptureFixture) -> None:
    code = main(["models", "--bench", "--models", "lenet5", "--image-size", "28",
                 "--channels", "1", "--batch-size", "8", "--seconds", "0.05",
                 "--images", "1000"])
    out = capsys.readouterr().out
    assert code == 0
    for column in ("train images/s", "infer images/s", "train GFLOP/s", "epoch"):
        assert column in out
    row = next(line for line in out.splitlines() if "lenet5" in line)
    assert "fp32" in row and "contiguous" in row  # lenet5's ModelSpec: no bf16, no channels_last


def test_catalog_rows_and_the_bench_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    """models/catalog.py: typed rows; --bench without names measures the CPU-practical ones,
    each as its row is read, after `measuring` names it."""
    from imgcls.models import catalog

    request = catalog.CatalogRequest(image_size=28, channels=1)
    monkeypatch.setattr(catalog, "list_models", lambda: ["lenet5", "resnet18", "resnet20"])
    listed = catalog.describe_models(request)
    assert listed.left_out == []
    rows = {row.name: row for row in listed.rows}
    assert rows["resnet20"].parameters == 269_434
    assert [rows[name].cpu_practical for name in ("lenet5", "resnet18", "resnet20")] == [
        True, False, True]
    small = catalog.describe_models(catalog.CatalogRequest(image_size=16))
    assert small.left_out == [catalog.LeftOut("lenet5", 28), catalog.LeftOut("resnet18", 28)]
    assert [row.name for row in small.rows] == ["resnet20"]

    events: list[str] = []
    monkeypatch.setattr(speed, "measure_throughput",
                        lambda name, **_: events.append(f"measured {name}") or name)
    bench = catalog.bench_models(request, measuring=lambda name: events.append(name))
    assert events == []  # nothing measured before the rows are read
    assert list(bench.rows) == ["lenet5", "resnet20"]
    assert events == ["lenet5", "measured lenet5", "resnet20", "measured resnet20"]
    named = catalog.bench_models(catalog.CatalogRequest(names=["resnet18"], image_size=28))
    assert list(named.rows) == ["resnet18"]  # a named network is measured, practical or not
    with pytest.raises(UserError, match="must be positive"):
        catalog.describe_models(catalog.CatalogRequest(seconds=0))


def test_measure_throughput_returns_rates() -> None:
    result = speed.measure_throughput("lenet5", image_size=28, channels=1, batch_size=8,
                                      seconds=0.05, warmup_steps=1)
    assert result.train_images_per_s > 0 and result.infer_images_per_s > 0
    assert result.forward_mflops == pytest.approx(_mflops_at_28("lenet5"))
    assert result.train_gflops == pytest.approx(
        3 * result.forward_mflops * result.train_images_per_s / 1e3)
    assert result.epoch_seconds(1000) == pytest.approx(1000 / result.train_images_per_s)


def test_models_rejects_an_unknown_model(capsys: pytest.CaptureFixture) -> None:
    assert main(["models", "--models", "resnet21"]) == 2
    assert "did you mean" in capsys.readouterr().err


def test_densenet_training_steps_leave_no_feature_maps_behind() -> None:
    # dense_train.py's autograd nodes once kept each step's maps alive through a reference
    # cycle Python's collector cannot see (~85 MB a step at batch 128): a run died of memory.
    import gc

    model = create_model("densenet_bc_40", num_classes=10, in_channels=1, image_size=28).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(2):
        loss = nn.functional.cross_entropy(model(torch.randn(4, 1, 28, 28)),
                                           torch.tensor([0, 1, 2, 3]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    del loss
    gc.collect()
    alive = [item for item in gc.get_objects() if type(item).__name__ == "_BlockMaps"]
    assert alive == [], f"{len(alive)} dense blocks' maps outlived their step"
