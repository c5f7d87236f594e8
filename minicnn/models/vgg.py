"""VGG (Simonyan & Zisserman 2015, "Very Deep Convolutional Networks for Large-Scale Image
Recognition"): only 3x3 convolutions with stride 1 and padding 1, 2x2/2 max pools between stages.

Two stacked 3x3 convs see a 5x5 window with 2·9·C² = 18C² weights instead of 25C² (three see 7x7
with 27C² instead of 49C²), and add a ReLU in between. Configurations A, B, D, E of the paper's
Table 1 are vgg11, vgg13, vgg16, vgg19; the ``_bn`` builders put a BatchNorm after each conv (not in
the paper; torchvision's variants). Layout, keys and init are torchvision's: ``features`` (convs
and pools), ``avgpool`` (AdaptiveAvgPool2d((7, 7)), the identity at 224x224), ``classifier``
(4096-4096-classes with ReLU and dropout 0.5). Five pools halve the map, so the smallest input is
32x32 (the map is then 1x1 and the adaptive pool repeats it to 7x7).
"""

from __future__ import annotations

from .. import nn
from ._common import check_input, init_bn_
from ._registry import register_model

__all__ = [
    "VGG",
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg13_bn",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
]

# Table 1 of the paper: numbers are 3x3 conv output channels, "M" a 2x2/2 max pool.
CFGS = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [
        64,
        64,
        "M",
        128,
        128,
        "M",
        256,
        256,
        256,
        256,
        "M",
        512,
        512,
        512,
        512,
        "M",
        512,
        512,
        512,
        512,
        "M",
    ],
}


def make_layers(cfg, batch_norm=False):
    """The ``features`` Sequential of a config: conv (-> BN) -> ReLU per number, a pool per "M"."""
    layers, in_channels = [], 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        layers.append(nn.Conv2d(in_channels, v, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(v))
        layers.append(nn.ReLU(inplace=True))
        in_channels = v
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """features -> avgpool -> flatten -> classifier (torchvision's VGG)."""

    def __init__(self, features, num_classes=1000, init_weights=True, dropout=0.5, arch="vgg"):
        super().__init__()
        self.arch = arch
        self.default_input_size, self.min_input_size = (3, 224, 224), 32
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        if init_weights:
            self._initialize_weights()

    def _initialize_weights(self):
        # torchvision's choice: He init (fan_out) for the ReLU convs, N(0, 0.01²) for the FC layers.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)
            else:
                init_bn_(m)

    def forward(self, x):
        check_input(self, x, self.min_input_size, "five 2x2/2 max pools")
        x = self.features(x)
        x = self.avgpool(x)
        x = x.flatten(1)
        return self.classifier(x)


def _builder(arch, cfg, batch_norm, doc):
    """The builder ``arch``: VGG configuration ``cfg`` (Table 1), with BatchNorm or not."""

    def build(num_classes: int = 1000, **kwargs) -> VGG:
        layers = make_layers(CFGS[cfg], batch_norm)
        return VGG(layers, num_classes=num_classes, arch=arch, **kwargs)

    build.__name__ = build.__qualname__ = arch
    build.__doc__ = doc
    return register_model("vgg")(build)


# torchvision's builders: configuration A, B, D or E, each also with BatchNorm (``_bn``).
vgg11 = _builder("vgg11", "A", False, "VGG-11, configuration A (8 convs + 3 FC).")
vgg11_bn = _builder("vgg11_bn", "A", True, "VGG-11 with BatchNorm.")
vgg13 = _builder("vgg13", "B", False, "VGG-13, configuration B (10 convs + 3 FC).")
vgg13_bn = _builder("vgg13_bn", "B", True, "VGG-13 with BatchNorm.")
vgg16 = _builder("vgg16", "D", False, "VGG-16, configuration D (13 convs + 3 FC).")
vgg16_bn = _builder("vgg16_bn", "D", True, "VGG-16 with BatchNorm.")
vgg19 = _builder("vgg19", "E", False, "VGG-19, configuration E (16 convs + 3 FC).")
vgg19_bn = _builder("vgg19_bn", "E", True, "VGG-19 with BatchNorm.")
