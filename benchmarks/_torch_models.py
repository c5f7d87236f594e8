"""The PyTorch twins of minicnn.models for bench_models.py (and bench_train_gpu.py).

Written with torch.nn, mirroring minicnn.models (and torchvision: inplace ReLUs, the same module
names, hence the same state_dict keys); torchvision's builders are used where torchvision is
installed and has the model.
"""

from __future__ import annotations

import torch
import torch.nn as tnn


def _torch_alexnet_paper(num_classes):
    lrn = lambda: tnn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)  # noqa: E731
    relu = lambda: tnn.ReLU(inplace=True)  # noqa: E731
    m = tnn.Module()
    m.features = tnn.Sequential(
        tnn.Conv2d(3, 96, 11, stride=4),
        relu(),
        lrn(),
        tnn.MaxPool2d(3, 2),
        tnn.Conv2d(96, 256, 5, padding=2, groups=2),
        relu(),
        lrn(),
        tnn.MaxPool2d(3, 2),
        tnn.Conv2d(256, 384, 3, padding=1),
        relu(),
        tnn.Conv2d(384, 384, 3, padding=1, groups=2),
        relu(),
        tnn.Conv2d(384, 256, 3, padding=1, groups=2),
        relu(),
        tnn.MaxPool2d(3, 2),
    )
    m.avgpool = tnn.AdaptiveAvgPool2d((6, 6))
    m.classifier = tnn.Sequential(
        tnn.Linear(9216, 4096),
        relu(),
        tnn.Dropout(0.5),
        tnn.Linear(4096, 4096),
        relu(),
        tnn.Dropout(0.5),
        tnn.Linear(4096, num_classes),
    )
    m.forward = lambda x: m.classifier(torch.flatten(m.avgpool(m.features(x)), 1))
    return m


def _torch_vgg11_bn(num_classes):
    layers, c = [], 3
    for v in [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]:
        if v == "M":
            layers.append(tnn.MaxPool2d(2, 2))
        else:
            layers += [tnn.Conv2d(c, v, 3, padding=1), tnn.BatchNorm2d(v), tnn.ReLU(inplace=True)]
            c = v
    m = tnn.Module()
    m.features = tnn.Sequential(*layers)
    m.avgpool = tnn.AdaptiveAvgPool2d((7, 7))
    m.classifier = tnn.Sequential(
        tnn.Linear(512 * 7 * 7, 4096),
        tnn.ReLU(True),
        tnn.Dropout(0.5),
        tnn.Linear(4096, 4096),
        tnn.ReLU(True),
        tnn.Dropout(0.5),
        tnn.Linear(4096, num_classes),
    )
    m.forward = lambda x: m.classifier(torch.flatten(m.avgpool(m.features(x)), 1))
    return m


def _torch_googlenet_paper(num_classes):
    class ConvReLU(tnn.Module):
        def __init__(self, cin, cout, **kw):
            super().__init__()
            self.conv = tnn.Conv2d(cin, cout, **kw)

        def forward(self, x):
            return torch.relu_(self.conv(x))

    class Inception(tnn.Module):
        def __init__(self, cin, c1, c3r, c3, c5r, c5, pp):
            super().__init__()
            self.branch1 = ConvReLU(cin, c1, kernel_size=1)
            self.branch2 = tnn.Sequential(
                ConvReLU(cin, c3r, kernel_size=1), ConvReLU(c3r, c3, kernel_size=3, padding=1)
            )
            self.branch3 = tnn.Sequential(
                ConvReLU(cin, c5r, kernel_size=1), ConvReLU(c5r, c5, kernel_size=5, padding=2)
            )
            self.branch4 = tnn.Sequential(
                tnn.MaxPool2d(3, 1, padding=1, ceil_mode=True), ConvReLU(cin, pp, kernel_size=1)
            )

        def forward(self, x):
            return torch.cat(
                [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1
            )

    from minicnn.models.googlenet import INCEPTION_CFG, out_channels

    class GoogLeNet(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = ConvReLU(3, 64, kernel_size=7, stride=2, padding=3)
            self.maxpool1 = tnn.MaxPool2d(3, 2, ceil_mode=True)
            self.lrn1 = tnn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
            self.conv2 = ConvReLU(64, 64, kernel_size=1)
            self.conv3 = ConvReLU(64, 192, kernel_size=3, padding=1)
            self.lrn2 = tnn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
            self.maxpool2 = tnn.MaxPool2d(3, 2, ceil_mode=True)
            c = 192
            for name, cfg in INCEPTION_CFG.items():
                setattr(self, "inception" + name, Inception(c, *cfg))
                c = out_channels(name)
            self.maxpool3 = tnn.MaxPool2d(3, 2, ceil_mode=True)
            self.maxpool4 = tnn.MaxPool2d(3, 2, ceil_mode=True)
            self.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
            self.dropout = tnn.Dropout(0.4)
            self.fc = tnn.Linear(1024, num_classes)

        def forward(self, x):
            x = self.lrn1(self.maxpool1(self.conv1(x)))
            x = self.maxpool2(self.lrn2(self.conv3(self.conv2(x))))
            x = self.maxpool3(self.inception3b(self.inception3a(x)))
            x = self.inception4d(self.inception4c(self.inception4b(self.inception4a(x))))
            x = self.maxpool4(self.inception4e(x))
            x = self.inception5b(self.inception5a(x))
            return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))

    return GoogLeNet()


def _torch_resnet(block_name, layers, num_classes):
    def conv3x3(cin, cout, stride=1):
        return tnn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)

    def conv1x1(cin, cout, stride=1):
        return tnn.Conv2d(cin, cout, 1, stride=stride, bias=False)

    class BasicBlock(tnn.Module):
        expansion = 1

        def __init__(self, cin, planes, stride=1, downsample=None):
            super().__init__()
            self.conv1, self.bn1 = conv3x3(cin, planes, stride), tnn.BatchNorm2d(planes)
            self.relu = tnn.ReLU(inplace=True)
            self.conv2, self.bn2 = conv3x3(planes, planes), tnn.BatchNorm2d(planes)
            self.downsample = downsample

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu(out + identity)

    class Bottleneck(tnn.Module):
        expansion = 4

        def __init__(self, cin, planes, stride=1, downsample=None):
            super().__init__()
            self.conv1, self.bn1 = conv1x1(cin, planes), tnn.BatchNorm2d(planes)
            self.conv2, self.bn2 = conv3x3(planes, planes, stride), tnn.BatchNorm2d(planes)
            self.conv3, self.bn3 = conv1x1(planes, planes * 4), tnn.BatchNorm2d(planes * 4)
            self.relu = tnn.ReLU(inplace=True)
            self.downsample = downsample

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
            return self.relu(out + identity)

    block = BasicBlock if block_name == "basic" else Bottleneck
    m = tnn.Module()
    m.conv1 = tnn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
    m.bn1, m.relu = tnn.BatchNorm2d(64), tnn.ReLU(inplace=True)
    m.maxpool = tnn.MaxPool2d(3, 2, padding=1)
    cin = 64
    for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
        stride, cout = (1 if i == 0 else 2), planes * block.expansion
        down = None
        if stride != 1 or cin != cout:
            down = tnn.Sequential(conv1x1(cin, cout, stride), tnn.BatchNorm2d(cout))
        blocks = [block(cin, planes, stride, down)] + [block(cout, planes) for _ in range(1, n)]
        setattr(m, f"layer{i + 1}", tnn.Sequential(*blocks))
        cin = cout
    m.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
    m.fc = tnn.Linear(512 * block.expansion, num_classes)

    def forward(x):
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        x = m.layer4(m.layer3(m.layer2(m.layer1(x))))
        return m.fc(torch.flatten(m.avgpool(x), 1))

    m.forward = forward
    return m


def _torch_densenet121(num_classes, growth=32, blocks=(6, 12, 24, 16), init=64, bn_size=4):
    from collections import OrderedDict

    class DenseLayer(tnn.Module):
        def __init__(self, cin):
            super().__init__()
            self.norm1, self.relu1 = tnn.BatchNorm2d(cin), tnn.ReLU(inplace=True)
            self.conv1 = tnn.Conv2d(cin, bn_size * growth, 1, bias=False)
            self.norm2, self.relu2 = tnn.BatchNorm2d(bn_size * growth), tnn.ReLU(inplace=True)
            self.conv2 = tnn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False)

        def forward(self, x):
            return self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))

    class DenseBlock(tnn.ModuleDict):
        def __init__(self, n, cin):
            super().__init__()
            for i in range(n):
                self.add_module(f"denselayer{i + 1}", DenseLayer(cin + i * growth))

        def forward(self, x):
            features = [x]
            for layer in self.values():
                features.append(layer(torch.cat(features, 1)))
            return torch.cat(features, 1)

    stem = [
        ("conv0", tnn.Conv2d(3, init, 7, stride=2, padding=3, bias=False)),
        ("norm0", tnn.BatchNorm2d(init)),
        ("relu0", tnn.ReLU(inplace=True)),
        ("pool0", tnn.MaxPool2d(3, 2, padding=1)),
    ]
    m = tnn.Module()
    m.features = tnn.Sequential(OrderedDict(stem))
    c = init
    for i, n in enumerate(blocks):
        m.features.add_module(f"denseblock{i + 1}", DenseBlock(n, c))
        c += n * growth
        if i != len(blocks) - 1:
            m.features.add_module(
                f"transition{i + 1}",
                tnn.Sequential(
                    OrderedDict(
                        [
                            ("norm", tnn.BatchNorm2d(c)),
                            ("relu", tnn.ReLU(inplace=True)),
                            ("conv", tnn.Conv2d(c, c // 2, 1, bias=False)),
                            ("pool", tnn.AvgPool2d(2, 2)),
                        ]
                    )
                ),
            )
            c //= 2
    m.features.add_module(f"norm{len(blocks) + 1}", tnn.BatchNorm2d(c))
    m.classifier = tnn.Linear(c, num_classes)
    m.forward = lambda x: m.classifier(
        torch.flatten(tnn.functional.adaptive_avg_pool2d(torch.relu(m.features(x)), (1, 1)), 1)
    )
    return m


def torch_model(name, num_classes):
    builders = {
        "alexnet": lambda: _torch_alexnet_paper(num_classes),
        "vgg11_bn": lambda: _torch_vgg11_bn(num_classes),
        "googlenet": lambda: _torch_googlenet_paper(num_classes),
        "resnet18": lambda: _torch_resnet("basic", [2, 2, 2, 2], num_classes),
        "resnet50": lambda: _torch_resnet("bottleneck", [3, 4, 6, 3], num_classes),
        "densenet121": lambda: _torch_densenet121(num_classes),
    }
    try:  # torchvision's own definitions where they are the same network as minicnn's
        import torchvision.models as tvm

        if name in ("vgg11_bn", "resnet18", "resnet50", "densenet121"):
            return getattr(tvm, name)(num_classes=num_classes)
    except ImportError:
        pass
    return builders[name]()
