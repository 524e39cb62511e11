"""--model auto with ImageNet weights: which network starts from which file, or why none does.

On photos (images over 64 px) with few images per class a pretrained backbone does better than
the best network trained from scratch in the same time (bench/transfer.py, 5 minutes, 100
Fashion-MNIST images per class: +10.5 points on the AVX2 kind of machine (3 seeds), +3.6 on
the AMX kind (5 seeds), where the from-scratch networks train in bf16; level at 500 per class), so
`auto` starts from ImageNet weights whenever a file is at hand: the one --pretrained names,
else one in torch.hub's cache, else a download that succeeds. Without weights it says why and
trains the fastest photo network from scratch. `--no-pretrained` turns this off.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from imgcls.config import NO_PRETRAINED
from imgcls.errors import UserError
from imgcls.models import create_model, get_spec, list_models
from imgcls.models.imagenet_weights import cached_weights_file, network_of_file
from imgcls.models.pretrained import IMAGENET, load_compatible, torchvision_weights_file
from imgcls.models.weights_file import read_state_dict_file

# When torch's cache holds weights of several networks, the first of these starts. Phone-sized
# networks first: their model is what the web app ships (imgcls export --format web), and
# mobilenet_v2 is the one measured with real ImageNet weights (bench/transfer.py).
PREFERRED_NETWORKS = ("mobilenet_v2", "mobilenet_v3_large", "efficientnet_b0",
                      "mobilenet_v3_small", "resnet18")
DOWNLOADED_NETWORK = "mobilenet_v2"  # what auto downloads when nothing is at hand
# From scratch, the photo network with the most training images/s at 224 px
# (bench/transfer.py --speed-only).
SCRATCH_MODEL = "mobilenet_v3_small"
OFFLINE_VARIABLE = "IMGCLS_OFFLINE"  # set (to anything but "" or "0"): auto never downloads
DOWNLOAD_TIMEOUT_S = 20.0  # a blocked network fails the download instead of stalling the run


@dataclass(frozen=True)
class PretrainedChoice:
    model: str
    weights: str | None  # the weights file, None: from scratch
    reason: str


def choose_pretrained(
    pretrained: str | None, *, channels: int, image_size: int, num_classes: int,
) -> PretrainedChoice:
    """The network and weights file for --model auto given --pretrained's value (None: left
    open, "imagenet", a file, or "none")."""
    if pretrained == NO_PRETRAINED:
        return PretrainedChoice(SCRATCH_MODEL, None, "--no-pretrained: from scratch")
    if pretrained not in (None, IMAGENET):
        network = network_of_weights(Path(pretrained), channels=channels,
                                     image_size=image_size, num_classes=num_classes)
        # The user's file may hold any pretraining: say where the weights come from, not what.
        return PretrainedChoice(network, pretrained, f"--pretrained weights from {pretrained}")
    for network in PREFERRED_NETWORKS:
        cached = cached_weights_file(network)
        if cached is not None:
            return PretrainedChoice(network, str(cached), f"ImageNet weights in torch's cache, "
                                                          f"{cached}")
    try:
        downloaded = download_weights(DOWNLOADED_NETWORK)
    except UserError as error:
        if pretrained == IMAGENET:  # asked for by name: no silent fallback
            raise
        return PretrainedChoice(SCRATCH_MODEL, None, f"no ImageNet weights at hand ({error});"
                                                     f" from scratch")
    return PretrainedChoice(DOWNLOADED_NETWORK, str(downloaded),
                            f"ImageNet weights downloaded to {downloaded}")


def download_weights(network: str) -> Path:
    """torchvision's default weights of `network`, downloaded into torch's cache unless
    IMGCLS_OFFLINE is set; a UserError says why not."""
    if os.environ.get(OFFLINE_VARIABLE, "") not in ("", "0"):
        raise UserError(f"{OFFLINE_VARIABLE} is set, so nothing is downloaded; pass"
                        f" --pretrained PATH or put a weights file in torch's cache")
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        return torchvision_weights_file(get_spec(network))
    finally:
        socket.setdefaulttimeout(previous)


def network_of_weights(path: Path, *, channels: int, image_size: int, num_classes: int) -> str:
    """The registry network a weights file is for: its torch.hub name (mobilenet_v2-….pth)
    says, else the first preferred network that the file fills (pretrained.load_compatible's
    share rule); a UserError names the file when none fits."""
    with_weights = tuple(name for name in list_models()
                         if get_spec(name).torchvision_name == name)
    named = network_of_file(path, with_weights)
    if named is not None:
        return named
    state_dict = read_state_dict_file(path)
    for network in PREFERRED_NETWORKS:
        model = create_model(network, num_classes=num_classes, in_channels=channels,
                             image_size=image_size)
        try:
            load_compatible(model, state_dict, head=get_spec(network).head,
                            in_channels=channels, source=str(path))
        except UserError:
            continue
        return network
    raise UserError(f"--pretrained {path}: the file holds weights of none of"
                    f" {', '.join(PREFERRED_NETWORKS)} — pass --model NAME with it")
