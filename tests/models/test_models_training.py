"""minicnn.models in use: GoogLeNet's aux outputs and loss, one SGD step per family, state_dict
round trips through .npz, and (when torchvision is installed) identical logits with torchvision's
weights. (Counts, shapes, keys and input sizes: test_models.py.)"""

import numpy as np
import pytest

import minicnn
import minicnn.functional as F
from minicnn import io, models
from minicnn.models import GoogLeNetOutputs, googlenet_loss
from conftest import assert_close

TV = {"variant": "torchvision"}


# ---- GoogLeNet aux heads -------------------------------------------------------------------------
def test_googlenet_outputs_train_vs_eval():
    for variant, side in (("paper", 79), ("torchvision", 64)):
        m = models.googlenet(num_classes=6, variant=variant)
        out = m.train()(minicnn.randn(2, 3, side, side))
        assert isinstance(out, GoogLeNetOutputs) and out._fields == (
            "logits",
            "aux_logits2",
            "aux_logits1",
        )
        assert [o.shape for o in out] == [(2, 6)] * 3
        with minicnn.no_grad():
            assert isinstance(m.eval()(minicnn.randn(2, 3, side, side)), minicnn.Tensor)
    m = models.googlenet(num_classes=6, aux_logits=False).train()
    assert m.aux1 is None and isinstance(m(minicnn.randn(2, 3, 64, 64)), minicnn.Tensor)


def test_googlenet_paper_aux_needs_79px_in_training():
    m = models.googlenet(num_classes=3).train()
    with pytest.raises(ValueError, match="at least 79x79.*aux heads.*eval"):
        m(minicnn.randn(1, 3, 78, 78))
    with minicnn.no_grad():
        assert m.eval()(minicnn.randn(1, 3, 78, 78)).shape == (1, 3)


def test_googlenet_loss_weights_aux_by_0_3():
    logits, aux2, aux1 = (minicnn.randn(4, 5) for _ in range(3))
    target = minicnn.tensor([0, 1, 2, 4])
    ce = [F.cross_entropy(t, target).item() for t in (logits, aux2, aux1)]
    loss = googlenet_loss(GoogLeNetOutputs(logits, aux2, aux1), target)
    assert loss.item() == pytest.approx(ce[0] + 0.3 * (ce[1] + ce[2]), rel=1e-6)
    assert googlenet_loss(logits, target).item() == pytest.approx(ce[0], rel=1e-6)


def test_googlenet_transform_input():
    m = models.googlenet(variant="torchvision", transform_input=True, aux_logits=False).eval()
    x = np.random.default_rng(0).standard_normal((1, 3, 4, 4))
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    expected = x * (std / 0.5)[None, :, None, None] + ((mean - 0.5) / 0.5)[None, :, None, None]
    assert_close(m._transform_input(minicnn.tensor(x)), expected)


# ---- training ------------------------------------------------------------------------------------
TRAIN_CASES = [  # one per family, small: (builder, kwargs, input side)
    ("alexnet", {"dropout": 0.0}, 67),
    ("vgg11_bn", {"dropout": 0.0, "init_weights": False}, 32),
    ("googlenet", {"dropout": 0.0, "dropout_aux": 0.0}, 79),
    ("resnet20", {}, 32),
    ("densenet_bc", {"depth": 16}, 32),
]


@pytest.mark.parametrize("name,kwargs,side", TRAIN_CASES, ids=[c[0] for c in TRAIN_CASES])
def test_one_sgd_step_lowers_the_loss(name, kwargs, side):
    build = models.densenet_bc if name == "densenet_bc" else models.get_model_builder(name)
    model = build(num_classes=4, **kwargs).train()
    x, target = minicnn.randn(2, 3, side, side), minicnn.tensor([0, 3])

    def loss():
        return googlenet_loss(model(x), target)  # plain cross-entropy for a plain Tensor

    before = loss()
    before.backward()
    params = list(model.parameters())
    assert all(p.grad is not None for p in params)
    lr = 1e-2 / max(np.sqrt(sum(float((p.grad.numpy() ** 2).sum()) for p in params)), 1.0)
    for p in params:
        p._data -= lr * p.grad._data
    with minicnn.no_grad():
        after = loss()
    assert after.item() < before.item()


# ---- state_dict round trip -----------------------------------------------------------------------
def test_state_dict_round_trip_through_npz(tmp_path):
    model = models.resnet20()
    with minicnn.no_grad():
        model.train()(minicnn.randn(4, 3, 8, 8))  # moves running stats and num_batches_tracked
    path = tmp_path / "resnet20.npz"
    io.save_npz(path, model.state_dict())
    loaded = io.load_npz(path)
    assert list(loaded) == list(model.state_dict())
    assert (
        loaded["bn1.num_batches_tracked"].dtype == np.int64
        and loaded["bn1.num_batches_tracked"] == 1
    )
    other = models.resnet20()
    other.load_state_dict(loaded)
    x = minicnn.randn(2, 3, 16, 16)
    with minicnn.no_grad():
        assert_close(other.eval()(x), model.eval()(x), dtype=np.float32, rtol=0, atol=0)


def test_googlenet_round_trip_and_converted_checkpoint_without_aux(tmp_path):
    """torchvision's pretrained GoogLeNet file keeps aux heads: load_torchvision_weights drops
    them."""
    from minicnn.models.convert import load_torchvision_weights

    src = models.googlenet(variant="torchvision")
    io.save_npz(tmp_path / "g.npz", src.state_dict())
    dst = models.googlenet(variant="torchvision", aux_logits=False)
    with pytest.raises(RuntimeError, match="Unexpected key.*aux1"):
        dst.load_state_dict(io.load_npz(tmp_path / "g.npz"))
    load_torchvision_weights(dst, tmp_path / "g.npz")
    assert_close(dst.fc.weight, src.fc.weight, dtype=np.float32, rtol=0, atol=0)


# ---- torchvision (optional; skipped where it is not installed) -----------------------------------
@pytest.mark.parametrize(
    "name,kwargs,side",
    [
        ("alexnet", TV, 64),
        ("googlenet", TV, 64),
        ("resnet18", {}, 32),
        ("resnet50", {}, 32),
        ("densenet121", {}, 32),
    ],
)
def test_same_logits_as_torchvision(name, kwargs, side):
    torchvision = pytest.importorskip("torchvision")  # first: fails fast where torch is there alone
    import torch

    torch.manual_seed(0)
    tv_kwargs = {"init_weights": True} if name == "googlenet" else {}
    tv = getattr(torchvision.models, name)(**tv_kwargs).eval().double()
    with torch.no_grad():
        for m in tv.modules():  # non-trivial BN statistics, so swapped BN keys would show
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.2, 0.2), m.running_var.uniform_(0.5, 1.5)
    ours = models.get_model(name, **kwargs).eval().double()
    ours.load_state_dict({k: v.numpy() for k, v in tv.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((2, 3, side, side))
    with torch.no_grad():
        expected = tv(torch.tensor(x)).numpy()
    with minicnn.no_grad():
        assert_close(ours(minicnn.tensor(x)), expected, rtol=1e-9, atol=1e-9)
