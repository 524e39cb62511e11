"""The model zoo: a registry of classic networks, pretrained-weight loading, size and cost.

Importing this package registers every family.
"""

from imgcls.models import (  # noqa: F401  (they register)
    alexnet,
    alexnet_small,
    densenet,
    lenet,
    mobile,
    resnet,
    resnet_cifar,
    vgg,
    vgg_small,
)
from imgcls.models.imagenet_weights import ImageNetWeights, imagenet_weights
from imgcls.models.info import count_parameters, mflops
from imgcls.models.pretrained import (
    LoadReport,
    freeze_backbone,
    load_compatible,
    load_pretrained,
    torchvision_state_dict,
)
from imgcls.models.registry import (
    ModelSpec,
    create_model,
    get_spec,
    list_models,
)
from imgcls.models.weights_file import read_state_dict_file

__all__ = [
    "ImageNetWeights",
    "LoadReport",
    "ModelSpec",
    "count_parameters",
    "create_model",
    "freeze_backbone",
    "get_spec",
    "imagenet_weights",
    "list_models",
    "load_compatible",
    "load_pretrained",
    "mflops",
    "read_state_dict_file",
    "torchvision_state_dict",
]
