"""The built-in data sets: digits, fashion-mnist, mnist, cifar10.

digits ships inside scikit-learn, so it always works offline. The others are looked up on
disk first (--data-dir, Debian's dataset package, our cache) and downloaded with
torchvision only as a last resort; offline, the error says how to provide the files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from imgcls.data.decode import decode_arrays
from imgcls.data.idx import read_idx
from imgcls.data.imageset import ImageSet
from imgcls.errors import UserError
from imgcls.utils.paths import cache_dir

# (channels, size) each built-in set is stored at.
NATIVE_FORMATS: dict[str, tuple[int, int]] = {
    # digits are 8x8, below every model's 28 px minimum: upscaled (bilinear) to 32.
    "digits": (1, 32),
    "fashion-mnist": (1, 28),
    "mnist": (1, 28),
    "cifar10": (3, 32),
}
_ALIASES = {"fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist",
            "cifar-10": "cifar10", "cifar_10": "cifar10"}

# Folders where a system package installs the IDX files (Debian: dataset-fashion-mnist).
SYSTEM_DIRS: dict[str, list[Path]] = {
    "fashion-mnist": [Path("/usr/share/datasets/fashion-mnist")],
}


@dataclass(frozen=True)
class _IdxDataset:
    torchvision_class: str  # also the folder torchvision downloads into: <root>/<class>/raw
    class_names: tuple[str, ...]
    hflip_ok: bool
    install_hint: str  # the easiest way to get the files, for the offline error


_IDX_DATASETS = {
    "fashion-mnist": _IdxDataset(
        "FashionMNIST",
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        hflip_ok=True,  # a mirrored shoe is still a shoe
        install_hint="install it with `apt-get install dataset-fashion-mnist` or ",
    ),
    "mnist": _IdxDataset(
        "MNIST", tuple(str(d) for d in range(10)),
        hflip_ok=False,  # a mirrored digit can be another digit, or none
        install_hint="",
    ),
}
# IDX file stems for each official part; some mirrors write ".idx3" instead of "-idx3".
_IDX_PARTS = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}


def builtin_name(data: str) -> str | None:
    """The canonical built-in name `data` refers to, or None if it names none."""
    name = data.strip().lower()
    name = _ALIASES.get(name, name)
    return name if name in NATIVE_FORMATS else None


def load_builtin(name: str, *, channels: int, size: int, data_dir: str | None) -> ImageSet:
    if name == "digits":
        return _load_digits(channels, size)
    if name == "cifar10":
        return _load_cifar10(channels, size, data_dir)
    return _load_idx_dataset(name, channels, size, data_dir)


def _load_digits(channels: int, size: int) -> ImageSet:
    from sklearn.datasets import load_digits  # imported here: sklearn costs ~1 s to import

    bunch = load_digits()
    gray = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)  # stored as 0..16
    return ImageSet(
        images=decode_arrays(gray, channels=channels, size=size),
        labels=torch.as_tensor(bunch.target, dtype=torch.int64),
        class_names=[str(digit) for digit in range(10)],
        item_ids=[f"digits/{i}" for i in range(len(gray))],
        preset_split=None,
        source="digits",
        hflip_ok=False,
    )


def _load_idx_dataset(name: str, channels: int, size: int, data_dir: str | None) -> ImageSet:
    spec = _IDX_DATASETS[name]
    files = _find_or_download_idx(name, spec, data_dir)
    parts = {split: _read_idx_part(name, files, split) for split in ("train", "test")}
    images = np.concatenate([parts["train"][0], parts["test"][0]])
    labels = np.concatenate([parts["train"][1], parts["test"][1]])
    sizes = {split: len(part[1]) for split, part in parts.items()}
    return ImageSet(
        images=decode_arrays(images, channels=channels, size=size),
        labels=torch.from_numpy(labels.astype(np.int64)),
        class_names=list(spec.class_names),
        item_ids=[f"{name}/{split}/{i}" for split, n in sizes.items() for i in range(n)],
        # the official split: 60k train, 10k test; val is carved from train by the splitter
        preset_split=["train"] * sizes["train"] + ["test"] * sizes["test"],
        source=name,
        hflip_ok=spec.hflip_ok,
    )


def _read_idx_part(name: str, files: dict, split: str) -> tuple[np.ndarray, np.ndarray]:
    image_file, label_file = files[split, "images"], files[split, "labels"]
    try:
        images, labels = read_idx(image_file), read_idx(label_file)
    except (OSError, ValueError) as error:
        raise UserError(f"{name}: cannot read IDX file ({error}); replace the file with an "
                        f"intact copy or point --data-dir to another folder") from error
    if images.ndim != 3 or images.dtype != np.uint8 or labels.shape != images.shape[:1]:
        raise UserError(f"{name}: {image_file} holds {images.dtype} {images.shape} and "
                        f"{label_file} {labels.shape} labels, expected uint8 [N, H, W] and N "
                        f"labels; replace them with the official files")
    return images, labels


def _find_or_download_idx(name: str, spec: _IdxDataset, data_dir: str | None) -> dict:
    root = Path(data_dir).expanduser() if data_dir else cache_dir()
    candidates = [*SYSTEM_DIRS.get(name, []), cache_dir() / spec.torchvision_class / "raw"]
    if data_dir:  # the user's folder first, as given or in torchvision's layout
        given = Path(data_dir).expanduser()
        candidates[:0] = [given, given / spec.torchvision_class / "raw"]
    for directory in candidates:
        if (files := _idx_files_in(directory)) is not None:
            return files
    try:
        import torchvision.datasets

        dataset_class = getattr(torchvision.datasets, spec.torchvision_class)
        for train in (True, False):
            dataset_class(root=str(root), train=train, download=True)
    except Exception as error:  # any failure (offline, mirror down) has one fix
        stems = ", ".join(f"{stem}.gz" for stem in _IDX_PARTS.values())
        looked = ", ".join(str(directory) for directory in candidates)
        raise UserError(
            f"{name} not found (looked in {looked}) and the download failed "
            f"({' '.join(str(error).split())[:200]}); {spec.install_hint}pass --data-dir DIR "
            f"with the four IDX files ({stems})"
        ) from error
    files = _idx_files_in(root / spec.torchvision_class / "raw")
    if files is None:
        raise UserError(f"{name}: torchvision downloaded into {root} but the IDX files are not "
                        f"in {root / spec.torchvision_class / 'raw'}; pass --data-dir DIR with "
                        f"the four IDX files")
    return files


def _idx_files_in(directory: Path) -> dict | None:
    """{(split, kind): path} when all four IDX files are in `directory` (gzipped or not)."""
    found = {}
    for part, stem in _IDX_PARTS.items():
        names = [stem, stem.replace("-idx", ".idx")]
        paths = [directory / (n + ext) for n in names for ext in ("", ".gz")]
        existing = [path for path in paths if path.is_file()]
        if not existing:
            return None
        found[part] = existing[0]
    return found


def _load_cifar10(channels: int, size: int, data_dir: str | None) -> ImageSet:
    import torchvision.datasets  # only here: importing torchvision costs over a second

    train, test = (_cifar10_part(torchvision.datasets.CIFAR10, is_train, data_dir)
                   for is_train in (True, False))
    sizes = {"train": len(train.targets), "test": len(test.targets)}
    return ImageSet(
        images=decode_arrays(np.concatenate([train.data, test.data]), channels=channels,
                             size=size),
        labels=torch.as_tensor([*train.targets, *test.targets], dtype=torch.int64),
        class_names=list(train.classes),
        item_ids=[f"cifar10/{split}/{i}" for split, n in sizes.items() for i in range(n)],
        preset_split=["train"] * sizes["train"] + ["test"] * sizes["test"],
        source="cifar10",
        hflip_ok=True,
    )


def _cifar10_part(dataset_class: type, train: bool, data_dir: str | None):
    roots = [Path(data_dir).expanduser()] if data_dir else []
    roots.append(cache_dir())
    for root in roots:
        try:  # without download: torchvision checks the files' checksums, no network
            return dataset_class(root=str(root), train=train, download=False)
        except RuntimeError:
            continue
    try:  # with an archive already in roots[0], torchvision only verifies and extracts it
        return dataset_class(root=str(roots[0]), train=train, download=True)
    except Exception as error:  # any failure (offline, mirror down) has one fix
        raise UserError(
            f"cifar10 not found in {', '.join(map(str, roots))} and the download failed "
            f"({' '.join(str(error).split())[:200]}); put cifar-10-python.tar.gz (from "
            f"https://www.cs.toronto.edu/~kriz/cifar.html) in a folder DIR and pass --data-dir DIR"
        ) from error
