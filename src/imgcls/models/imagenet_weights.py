"""torchvision's ImageNet weights of a network, described as data: the file torchvision
downloads and caches, the start of its sha256, and the inputs and classes they were made for.

Each record is read from torchvision's own Weights enum (`get_model_weights(name).DEFAULT`:
its url, transforms and meta, the same in torchvision 0.26 and 0.29), so no number is copied
here; torchvision (~2 s to import) is imported only when a record is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import urlparse

from imgcls.models.weights_file import HASHED_NAME


@dataclass(frozen=True)
class ImageNetWeights:
    network: str  # torchvision's builder: "mobilenet_v2"
    url: str
    file_name: str  # torchvision's name for it, download and cache: "resnet18-f37072fd.pth"
    sha256_prefix: str  # the file's sha256 starts with it; the name's last part: "f37072fd"
    mean: tuple[float, ...]  # the normalization the weights expect, per RGB channel
    std: tuple[float, ...]
    crop_size: int  # the side of the (centre-cropped) images they were evaluated on
    resize_size: int  # the side those images were resized to before the crop
    interpolation: str  # of that resize: "bilinear", "bicubic"
    num_classes: int  # the categories their head predicts: 1000

    def cached_path(self) -> Path:
        """Where torch.hub keeps the download: $TORCH_HOME/hub/checkpoints (TORCH_HOME
        defaults to ~/.cache/torch)."""
        import torch.hub

        return Path(torch.hub.get_dir()) / "checkpoints" / self.file_name


@cache
def imagenet_weights(network: str) -> ImageNetWeights:
    """The record of torchvision's default ImageNet weights of `network` (a torchvision name)."""
    from torchvision.models import get_model_weights

    weights = get_model_weights(network).DEFAULT
    # torchvision's presets keep sizes as one-element lists, the interpolation as an enum.
    preset = weights.transforms()
    file_name = Path(urlparse(weights.url).path).name
    named = HASHED_NAME.match(file_name)
    if named is None:  # every torchvision file so far carries its hash; a new one must too
        raise ValueError(f"torchvision's {network} weights file {file_name} names no sha256")
    return ImageNetWeights(
        network=network,
        url=weights.url,
        file_name=file_name,
        sha256_prefix=named["sha256_prefix"],
        mean=tuple(preset.mean),
        std=tuple(preset.std),
        crop_size=preset.crop_size[0],
        resize_size=preset.resize_size[0],
        interpolation=preset.interpolation.value,
        num_classes=len(weights.meta["categories"]),
    )


def cached_weights_file(network: str) -> Path | None:
    """A weights file of `network` in torch.hub's cache, as torch.hub names its downloads
    (`<network>-<sha256 prefix>.pth`: torchvision's current file, an older release's such as
    mobilenet_v2-b0353104.pth, or one put there by hand), newest first; None when there is none.
    The file's sha256 is checked when it is read (weights_file.read_state_dict_file)."""
    import torch.hub

    folder = Path(torch.hub.get_dir()) / "checkpoints"
    named = [path for path in folder.glob(f"{network}-*.pth")
             if (match := HASHED_NAME.match(path.name)) and match["stem"] == network]
    return max(named, key=lambda path: path.stat().st_mtime, default=None)


def network_of_file(path: Path, networks: tuple[str, ...]) -> str | None:
    """The network among `networks` whose weights a file named as torch.hub names them
    (`mobilenet_v2-b0353104.pth`) holds; None when the name says none of them."""
    match = HASHED_NAME.match(path.name)
    stem = match["stem"] if match else path.stem
    return stem if stem in networks else None
