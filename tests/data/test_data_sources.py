"""sources.py: folders, CSVs and the built-in data sets -> ImageSet."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imgcls.data import builtin
from imgcls.data.sources import load_source, native_format
from imgcls.errors import UserError

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
FASHION_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
needs_debian_fashion = pytest.mark.skipif(
    not (DEBIAN_FASHION / "train-images-idx3-ubyte.gz").is_file(),
    reason="apt-get install dataset-fashion-mnist",
)


def save(path: Path, mode: str = "RGB", size: tuple[int, int] = (40, 40), value=128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value).save(path)
    return path


@pytest.fixture
def mixed_folder(tmp_path: Path) -> Path:
    """3 classes, PNG and JPEG, mixed sizes and modes, nested folders, files to ignore."""
    root = tmp_path / "photos"
    save(root / "cat" / "a.png", "RGB", (40, 30), (200, 10, 10))
    save(root / "cat" / "b.jpg", "L", (50, 50), 90)
    save(root / "dog" / "c.png", "RGBA", (30, 60), (0, 0, 255, 255))
    save(root / "dog" / "2024" / "d.jpeg", "RGB", (64, 48), (0, 255, 0))
    save(root / "zebra" / "E.PNG", "P", (36, 36), 3)
    (root / "cat" / "notes.txt").write_text("not an image")
    save(root / "cat" / ".hidden.png")
    save(root / "zebra" / ".thumbs" / "x.png")
    save(root / ".cache" / "y.png")
    return root


def test_folder_of_classes(mixed_folder: Path) -> None:
    data = load_source(str(mixed_folder))
    assert data.class_names == ["cat", "dog", "zebra"]
    assert data.item_ids == ["cat/a.png", "cat/b.jpg", "dog/2024/d.jpeg", "dog/c.png",
                             "zebra/E.PNG"]
    assert data.labels.tolist() == [0, 0, 1, 1, 2]
    # color images present -> 3 channels; median shorter side of 30,50,30,48,36 -> 36
    assert data.images.shape == (5, 3, 36, 36) and data.images.dtype == torch.uint8
    assert data.images[0, :, 18, 18].tolist() == [200, 10, 10]
    assert data.preset_split is None and data.skipped == []
    assert data.source == str(mixed_folder.resolve()) and data.hflip_ok
    assert native_format(str(mixed_folder)) == (3, 36)


def test_folder_format_defaults_and_overrides(tmp_path: Path) -> None:
    for i, name in enumerate(["a", "b"]):
        save(tmp_path / name / "x.png", "L", (12, 20), 60 * (i + 1))  # tiny: clamped to 28
        save(tmp_path / name / "y.pgm", "L", (12, 12), 60 * (i + 1))
    assert native_format(str(tmp_path)) == (1, 28)
    assert load_source(str(tmp_path)).images.shape == (4, 1, 28, 28)
    wide = load_source(str(tmp_path), channels=3, image_size=16)
    assert wide.images.shape == (4, 3, 16, 16)
    assert torch.equal(wide.images[:, 0], wide.images[:, 2])  # gray replicated


def test_numeric_class_names_sort_numerically(tmp_path: Path) -> None:
    for name in ["2", "10", "9"]:
        save(tmp_path / name / "x.png", size=(8, 8))
    assert load_source(str(tmp_path)).class_names == ["2", "9", "10"]


def test_split_folders_are_used_as_given(tmp_path: Path) -> None:
    for split in ["train", "val", "test"]:
        for cls in ["ant", "bee"]:
            save(tmp_path / split / cls / f"{split}1.png", size=(30, 30))
    save(tmp_path / "train" / "bee" / "extra.png", size=(30, 30))
    data = load_source(str(tmp_path))
    assert data.class_names == ["ant", "bee"]
    assert data.preset_split == ["test", "test", "train", "train", "train", "val", "val"]
    assert data.item_ids[:3] == ["test/ant/test1.png", "test/bee/test1.png",
                                 "train/ant/train1.png"]
    assert data.labels.tolist() == [0, 1, 0, 1, 1, 0, 1]


def test_bad_files_are_skipped_by_item_id(mixed_folder: Path) -> None:
    (mixed_folder / "dog" / "broken.png").write_bytes(b"")
    data = load_source(str(mixed_folder))
    assert len(data.item_ids) == 5 and "dog/broken.png" not in data.item_ids
    assert data.skipped == [("dog/broken.png", "empty file (0 bytes)")]


@pytest.mark.parametrize(
    ("layout", "names"),
    [
        ({"loose.png": "img"}, ["no class subfolders", "loose"]),
        ({"cat/a.png": "img", "dog/readme.txt": "text"}, ["dog", "no images"]),
        ({"cat/a.png": "img", "cat/b.png": "img"}, ["only one class", "'cat'", ">= 2"]),
        ({"cat/a.png": "bad", "dog/b.png": "bad"}, ["none of the 2 images", "a.png"]),
        ({"train/cat/a.png": "img", "train/dog/b.png": "img", "extra/c.png": "img"},
         ["mixes split folders", "extra"]),
    ],
)
def test_folder_errors_name_the_problem(
    tmp_path: Path, layout: dict[str, str], names: list[str]
) -> None:
    for relative, kind in layout.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "img":
            save(path, size=(8, 8))
        else:
            path.write_text("not an image")
    with pytest.raises(UserError) as caught:
        load_source(str(tmp_path))
    message = str(caught.value)
    assert "\n" not in message and str(tmp_path) in message
    for name in names:
        assert name in message


def test_unknown_sources_list_the_accepted_forms(tmp_path: Path) -> None:
    for data in [str(tmp_path / "nowhere"), "imagenet", ""]:
        with pytest.raises(UserError, match="built-in name: digits, fashion-mnist"):
            load_source(data)
    not_csv = tmp_path / "images.zip"
    not_csv.write_bytes(b"PK")
    with pytest.raises(UserError, match="images.zip.*not a .csv"):
        load_source(str(not_csv))


def test_bad_format_overrides() -> None:
    with pytest.raises(UserError, match="channels=4"):
        load_source("digits", channels=4)
    with pytest.raises(UserError, match="image size 0"):
        load_source("digits", image_size=0)


def test_csv_with_relative_absolute_and_missing_paths(tmp_path: Path) -> None:
    save(tmp_path / "imgs" / "a.png", size=(32, 32))
    save(tmp_path / "imgs" / "b.jpg", size=(32, 32))
    elsewhere = save(tmp_path.parent / f"{tmp_path.name}-abs.png", size=(32, 32))
    csv_path = tmp_path / "list.csv"
    csv_path.write_text(
        "path,label\n"
        "imgs/a.png,cat\n"
        f"{elsewhere},dog\n"
        "\n"
        "imgs/gone.png,dog\n"
        "imgs/b.jpg,cat\n"
    )
    data = load_source(str(csv_path))
    assert data.class_names == ["cat", "dog"]
    assert data.item_ids == ["imgs/a.png", elsewhere.as_posix(), "imgs/b.jpg"]
    assert data.labels.tolist() == [0, 1, 0]
    assert data.skipped == [("imgs/gone.png", "file not found")]
    assert data.preset_split is None and data.source == str(csv_path)


def test_csv_split_column(tmp_path: Path) -> None:
    for name in "abcd":
        save(tmp_path / f"{name}.png", size=(28, 28))
    csv_path = tmp_path / "s.csv"
    csv_path.write_text("Label,Path,Split\nx,a.png,train\ny,b.png,train\nx,c.png,test\n"
                        "y,d.png,Val\n")
    data = load_source(str(csv_path))
    assert data.preset_split == ["train", "train", "test", "val"]
    assert data.labels.tolist() == [0, 1, 0, 1]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("file,class\na.png,x\n", "lacks column(s) path, label (found: file, class)"),
        ("path,labels\na.png,x\n", "lacks column(s) label (found: path, labels)"),
        ("", "no header row"),
        ("path,label\na.png,x\nb.png,x\n", "1 distinct label(s) (x)"),
        ("path,label,split\na.png,x,train\nb.png,y,holdout\n", "line 3: split 'holdout'"),
        ("path,label\na.png,x\nb.png,\n", "line 3: empty path or label"),
        ("path,label\na.png,x\n./a.png,y\n", "line 3: './a.png' is also on line 2"),
    ],
)
def test_csv_errors(tmp_path: Path, content: str, expected: str) -> None:
    csv_path = tmp_path / "bad.csv"
    csv_path.write_text(content)
    with pytest.raises(UserError) as caught:
        load_source(str(csv_path))
    assert expected in str(caught.value) and str(csv_path) in str(caught.value)


def test_digits() -> None:
    data = load_source("digits")
    assert data.images.shape == (1797, 1, 32, 32) and data.images.dtype == torch.uint8
    assert data.images.max() == 255 and data.images.min() == 0
    assert data.class_names == [str(d) for d in range(10)]
    assert data.labels.dtype == torch.int64 and set(data.labels.tolist()) == set(range(10))
    assert data.item_ids[17] == "digits/17" and data.preset_split is None
    assert not data.hflip_ok and data.source == "digits"
    assert native_format("digits") == (1, 32)


def test_digits_at_three_channels_replicate_gray() -> None:
    data = load_source("Digits", channels=3, image_size=28)
    assert data.images.shape == (1797, 3, 28, 28)
    assert torch.equal(data.images[:, 0], data.images[:, 1])


@pytest.mark.slow
@needs_debian_fashion
def test_fashion_mnist_from_the_debian_package() -> None:
    start = time.perf_counter()
    data = load_source("fashion-mnist")
    assert time.perf_counter() - start < 3.0
    assert data.images.shape == (70000, 1, 28, 28) and data.images.dtype == torch.uint8
    assert data.preset_split.count("train") == 60000 and data.preset_split.count("test") == 10000
    assert data.class_names == FASHION_NAMES
    assert data.item_ids[0] == "fashion-mnist/train/0"
    assert data.item_ids[60000] == "fashion-mnist/test/0"
    assert data.labels[:3].tolist() == [9, 0, 0]  # the official file's first labels
    assert data.hflip_ok and native_format("fashion-mnist") == (1, 28)


@pytest.mark.slow
@needs_debian_fashion
def test_fashion_mnist_empty_data_dir_falls_back_to_debian(tmp_path: Path) -> None:
    data = load_source("fashion_mnist", data_dir=str(tmp_path))
    assert len(data.item_ids) == 70000


def test_fashion_mnist_offline_without_files_says_how_to_get_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torchvision.datasets

    def no_network(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(builtin, "SYSTEM_DIRS", {})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", no_network)
    with pytest.raises(UserError) as caught:
        load_source("fashion-mnist", data_dir=str(tmp_path / "empty"))
    message = str(caught.value)
    assert "apt-get install dataset-fashion-mnist" in message and "--data-dir" in message
    assert str(tmp_path / "empty") in message and "\n" not in message


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    raw = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)


def test_mnist_from_data_dir_in_torchvision_layout(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    rng = np.random.default_rng(0)
    _write_idx(raw / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (30, 28, 28)))
    _write_idx(raw / "train-labels-idx1-ubyte", np.arange(30) % 10)
    _write_idx(raw / "t10k-images-idx3-ubyte", rng.integers(0, 256, (10, 28, 28)))
    _write_idx(raw / "t10k-labels-idx1-ubyte.gz", np.arange(10))
    data = load_source("mnist", data_dir=str(tmp_path))
    assert data.images.shape == (40, 1, 28, 28) and not data.hflip_ok
    assert data.preset_split == ["train"] * 30 + ["test"] * 10
    assert data.labels[30:].tolist() == list(range(10))
    assert data.item_ids[-1] == "mnist/test/9" and data.class_names[3] == "3"
    resized = load_source("mnist", data_dir=str(tmp_path), channels=3, image_size=32)
    assert resized.images.shape == (40, 3, 32, 32)


def test_corrupt_idx_file_is_a_user_error(tmp_path: Path) -> None:
    for stem in builtin._IDX_PARTS.values():
        (tmp_path / stem).write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05ab")
    with pytest.raises(UserError, match="mnist: cannot read IDX file"):
        load_source("mnist", data_dir=str(tmp_path))


class _FakeCifar:
    """Stands in for torchvision.datasets.CIFAR10: no files, no network."""

    def __init__(self, root: str, train: bool, download: bool) -> None:
        count = 6 if train else 4
        self.data = np.full((count, 32, 32, 3), 10 if train else 20, np.uint8)
        self.targets = [i % 2 for i in range(count)]
        self.classes = ["airplane", "automobile"]


def test_cifar10_assembles_train_and_test(monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", _FakeCifar)
    data = load_source("CIFAR-10")
    assert data.images.shape == (10, 3, 32, 32) and data.hflip_ok
    assert data.preset_split == ["train"] * 6 + ["test"] * 4
    assert data.images[6, 0, 0, 0] == 20 and data.class_names == ["airplane", "automobile"]
    assert data.item_ids[6] == "cifar10/test/0" and native_format("cifar10") == (3, 32)


def test_cifar10_offline_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    def missing(root: str, train: bool, download: bool):
        raise RuntimeError("Dataset not found or corrupted." if not download else "offline")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", missing)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(UserError) as caught:
        load_source("cifar10", data_dir=str(tmp_path / "dl"))
    assert "--data-dir" in str(caught.value) and str(tmp_path / "dl") in str(caught.value)
