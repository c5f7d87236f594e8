"""DenseNet (Huang, Liu, van der Maaten & Weinberger 2017, "Densely Connected Convolutional
Networks").

Inside a dense block every layer sees the concatenation of the block input and all earlier layers'
outputs, x_l = H_l([x_0, x_1, …, x_{l-1}]) (eq. 2), and adds ``growth_rate`` (k in the paper) new
channels: a block of L layers on C channels ends with C + L·k. Each layer is the "B" bottleneck
(sec. 3): BN -> ReLU -> 1x1 conv (bn_size·k channels) -> BN -> ReLU -> 3x3 conv (k channels).
Between blocks a transition (BN -> ReLU -> 1x1 conv -> 2x2/2 average pool) halves the map and, with
compression θ = 0.5 ("C"), the channels. Both together are DenseNet-BC.

ImageNet models (Table 1, torchvision's layout, keys and init): ``features`` = conv0 7x7/2 (2k
channels; 96 for densenet161) -> norm0 -> relu0 -> pool0 3x3/2 -> denseblock1, transition1, …,
denseblock4 -> norm5; then ReLU -> global average pool -> ``classifier``. Init: convs
kaiming_normal_ (fan_in), BN weight 1 bias 0, classifier bias 0. Three transitions halve the map
after the stride-4 stem, so the smallest input is 29x29.

CIFAR DenseNet-BC (sec. 4.2, ``densenet_bc_100``: L=100, k=12, 0.8M parameters): conv0 3x3 with 2k
channels, three dense blocks of (L - 4) / 6 layers, two transitions; smallest input 4x4.
"""

from __future__ import annotations

from collections import OrderedDict

from .. import functional as F
from .. import nn
from ..nn.normalization import batch_norm_relu
from ..ops.shape import cat
from ._common import check_input, init_bn_
from ._registry import register_model

__all__ = [
    "DenseNet",
    "densenet121",
    "densenet161",
    "densenet169",
    "densenet201",
    "densenet_bc",
    "densenet_bc_100",
]


class _DenseLayer(nn.Module):
    """BN-ReLU-1x1 conv (bn_size·k) -> BN-ReLU-3x3 conv (k): k new feature maps (eq. 2's H_l)."""

    def __init__(self, num_input_features, growth_rate, bn_size, drop_rate):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(num_input_features)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(num_input_features, bn_size * growth_rate, kernel_size=1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(
            bn_size * growth_rate, growth_rate, kernel_size=3, padding=1, bias=False
        )
        self.drop_rate = float(drop_rate)

    def forward(self, x):
        """``x`` is the concatenation [x_0, …, x_{l-1}] (the block builds it)."""
        out = self.conv1(batch_norm_relu(self.norm1, self.relu1, x))
        out = self.conv2(batch_norm_relu(self.norm2, self.relu2, out))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        return out


class _DenseBlock(nn.ModuleDict):
    """Layers ``denselayer1..L``; layer l reads the concatenation of the input and layers 1..l-1."""

    def __init__(self, num_layers, num_input_features, bn_size, growth_rate, drop_rate):
        super().__init__()
        for i in range(num_layers):
            layer = _DenseLayer(
                num_input_features + i * growth_rate, growth_rate, bn_size, drop_rate
            )
            self.add_module(f"denselayer{i + 1}", layer)

    def forward(self, x):
        features = [x]
        for layer in self.values():
            features.append(layer(cat(features, 1)))
        return cat(features, 1)


class _Transition(nn.Sequential):
    """BN -> ReLU -> 1x1 conv (compression) -> 2x2/2 average pool."""

    def __init__(self, num_input_features, num_output_features):
        super().__init__()
        self.add_module("norm", nn.BatchNorm2d(num_input_features))
        self.add_module("relu", nn.ReLU(inplace=True))
        self.add_module(
            "conv", nn.Conv2d(num_input_features, num_output_features, kernel_size=1, bias=False)
        )
        self.add_module("pool", nn.AvgPool2d(kernel_size=2, stride=2))


class DenseNet(nn.Module):
    """DenseNet-BC: ``block_config`` layers per block, growth ``growth_rate`` (k), ``bn_size``·k
    bottleneck channels, ``compression`` θ at each transition; ``small_inputs`` picks the CIFAR stem
    (3x3 conv, no pooling) instead of the ImageNet one (7x7/2 conv + 3x3/2 max pool)."""

    def __init__(
        self,
        growth_rate=32,
        block_config=(6, 12, 24, 16),
        num_init_features=64,
        bn_size=4,
        drop_rate=0.0,
        num_classes=1000,
        compression=0.5,
        small_inputs=False,
        arch="densenet",
    ):
        super().__init__()
        if not 0 < compression <= 1:
            raise ValueError(f"{arch}: compression must be in (0, 1], got {compression}")
        self.arch = arch
        if small_inputs:
            stem = [
                ("conv0", nn.Conv2d(3, num_init_features, kernel_size=3, padding=1, bias=False))
            ]
            self.default_input_size = (3, 32, 32)
        else:
            stem = [
                (
                    "conv0",
                    nn.Conv2d(3, num_init_features, kernel_size=7, stride=2, padding=3, bias=False),
                ),
                ("norm0", nn.BatchNorm2d(num_init_features)),
                ("relu0", nn.ReLU(inplace=True)),
                ("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
            ]
            self.default_input_size = (3, 224, 224)
        # Each transition needs a 2x2 map; the ImageNet stem divides the side by 4 (rounding up).
        transitions = len(block_config) - 1
        self.min_input_size = 2**transitions if small_inputs else 4 * 2**transitions - 3
        self.features = nn.Sequential(OrderedDict(stem))
        num_features = num_init_features
        for i, num_layers in enumerate(block_config):
            block = _DenseBlock(num_layers, num_features, bn_size, growth_rate, drop_rate)
            self.features.add_module(f"denseblock{i + 1}", block)
            num_features += num_layers * growth_rate
            if i != len(block_config) - 1:
                out_features = int(num_features * compression)
                self.features.add_module(
                    f"transition{i + 1}", _Transition(num_features, out_features)
                )
                num_features = out_features
        self.features.add_module(f"norm{len(block_config) + 1}", nn.BatchNorm2d(num_features))
        self.classifier = nn.Linear(num_features, num_classes)
        self._initialize_weights()

    def _initialize_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)
            else:
                init_bn_(m)

    def forward(self, x):
        check_input(
            self, x, self.min_input_size, "each transition's 2x2/2 average pool needs a 2x2 map"
        )
        x = F.relu(self.features(x))
        x = F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)
        return self.classifier(x)


def _densenet(arch, growth_rate, block_config, num_init_features, num_classes, **kwargs):
    return DenseNet(
        growth_rate, block_config, num_init_features, num_classes=num_classes, arch=arch, **kwargs
    )


def _imagenet(arch, growth_rate, block_config, num_init_features, doc):
    """The ImageNet builder ``arch`` (Table 1): growth rate k, layers per block, stem channels."""

    def build(num_classes: int = 1000, **kwargs) -> DenseNet:
        return _densenet(arch, growth_rate, block_config, num_init_features, num_classes, **kwargs)

    build.__name__ = build.__qualname__ = arch
    build.__doc__ = doc
    return register_model("densenet")(build)


densenet121 = _imagenet(
    "densenet121", 32, (6, 12, 24, 16), 64, "DenseNet-121: k=32, blocks (6, 12, 24, 16)."
)
densenet161 = _imagenet(
    "densenet161",
    48,
    (6, 12, 36, 24),
    96,
    "DenseNet-161: k=48, blocks (6, 12, 36, 24), 96 stem channels.",
)
densenet169 = _imagenet(
    "densenet169", 32, (6, 12, 32, 32), 64, "DenseNet-169: k=32, blocks (6, 12, 32, 32)."
)
densenet201 = _imagenet(
    "densenet201", 32, (6, 12, 48, 32), 64, "DenseNet-201: k=32, blocks (6, 12, 48, 32)."
)


def densenet_bc(
    depth: int = 100, growth_rate: int = 12, num_classes: int = 10, **kwargs
) -> DenseNet:
    """CIFAR DenseNet-BC of ``depth`` L: three blocks of (L - 4) / 6 bottleneck layers, 2k stem
    channels."""
    if (depth - 4) % 6 or depth < 10:
        raise ValueError(
            f"densenet_bc: depth must be 6n + 4 with n >= 1 (40, 100, 190…), got {depth}"
        )
    n = (depth - 4) // 6
    return _densenet(
        f"densenet_bc_{depth}",
        growth_rate,
        (n, n, n),
        2 * growth_rate,
        num_classes,
        small_inputs=True,
        **kwargs,
    )


@register_model("densenet")
def densenet_bc_100(num_classes: int = 10, growth_rate: int = 12, **kwargs) -> DenseNet:
    """CIFAR DenseNet-BC (L=100, k=12): three blocks of 16 layers, 0.8M parameters."""
    return densenet_bc(100, growth_rate, num_classes, **kwargs)
