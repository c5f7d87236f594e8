"""minicnn.models: the five CNN families of the ILSVRC lineage, torchvision-style builders and a
registry.

    >>> from minicnn import models
    >>> models.list_models()[:3]
    ['alexnet', 'densenet121', 'densenet161']
    >>> m = models.get_model("resnet50", num_classes=10)  # = models.resnet50(num_classes=10)

Every builder takes ``num_classes``; ``alexnet`` and ``googlenet`` take ``variant="paper"``
(default) or ``"torchvision"``, the ImageNet ResNets ``variant="torchvision"`` (default, v1.5) or
``"paper"``, the CIFAR ResNets ``shortcut="A"`` (default) or ``"B"``. The torchvision-compatible
models have torchvision's state_dict keys, shapes and parameter counts, so converted torchvision
weights (``minicnn.models.convert``) load with ``load_state_dict`` unchanged. Each built model
carries ``default_input_size`` (C, H, W) and ``min_input_size`` (smallest H = W its forward
accepts).
"""

# Each family module lists its classes and builders in its __all__ (as torchvision's models do).
from . import _registry, alexnet as _alexnet, densenet as _densenet, googlenet as _googlenet
from . import resnet as _resnet, vgg as _vgg
from ._registry import *  # noqa: F403
from .alexnet import *  # noqa: F403
from .densenet import *  # noqa: F403
from .googlenet import *  # noqa: F403
from .resnet import *  # noqa: F403
from .vgg import *  # noqa: F403

__all__ = [
    name
    for module in (_registry, _alexnet, _densenet, _googlenet, _resnet, _vgg)
    for name in module.__all__
]
