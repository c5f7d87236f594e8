"""minicnn.models: the five CNN families of the ILSVRC lineage, torchvision-style builders and a registry.

    >>> from minicnn import models
    >>> models.list_models()[:3]
    ['alexnet', 'densenet121', 'densenet161']
    >>> m = models.get_model("resnet50", num_classes=10)      # same as models.resnet50(num_classes=10)

Every builder takes ``num_classes``; ``alexnet`` and ``googlenet`` take ``variant="paper"``
(default)
or ``"torchvision"``, the ImageNet ResNets ``variant="torchvision"`` (default, v1.5) or ``"paper"``,
the CIFAR ResNets ``shortcut="A"`` (default) or ``"B"``. The torchvision-compatible models have
torchvision's state_dict keys, shapes and parameter counts, so converted torchvision weights
(``minicnn.models.convert``) load with ``load_state_dict`` unchanged. Each built model carries
``default_input_size`` (C, H, W) and ``min_input_size`` (smallest H = W its forward accepts).
"""

from ._registry import (
    get_model,
    get_model_builder,
    list_models,
    model_family,
    model_table,
    model_variants,
    register_model,
    variant_kwargs,
)
from .alexnet import AlexNet, alexnet
from .densenet import (
    DenseNet,
    densenet121,
    densenet161,
    densenet169,
    densenet201,
    densenet_bc,
    densenet_bc_100,
)
from .googlenet import GoogLeNet, GoogLeNetOutputs, googlenet, googlenet_loss
from .resnet import (
    BasicBlock,
    Bottleneck,
    CifarResNet,
    ResNet,
    resnet18,
    resnet20,
    resnet32,
    resnet34,
    resnet44,
    resnet50,
    resnet56,
    resnet101,
    resnet110,
    resnet152,
)
from .vgg import VGG, vgg11, vgg11_bn, vgg13, vgg13_bn, vgg16, vgg16_bn, vgg19, vgg19_bn

__all__ = [
    "AlexNet",
    "BasicBlock",
    "Bottleneck",
    "CifarResNet",
    "DenseNet",
    "GoogLeNet",
    "GoogLeNetOutputs",
    "ResNet",
    "VGG",
    "alexnet",
    "densenet121",
    "densenet161",
    "densenet169",
    "densenet201",
    "densenet_bc",
    "densenet_bc_100",
    "get_model",
    "get_model_builder",
    "googlenet",
    "googlenet_loss",
    "list_models",
    "model_family",
    "model_table",
    "model_variants",
    "register_model",
    "variant_kwargs",
    "resnet18",
    "resnet20",
    "resnet32",
    "resnet34",
    "resnet44",
    "resnet50",
    "resnet56",
    "resnet101",
    "resnet110",
    "resnet152",
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg13_bn",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
]
