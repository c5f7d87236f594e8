"""Every device class implements every method of the Backend protocol with its signature.

minicnn/backends/interface.py is the one list of kernels. A backend may add keyword-only
arguments with defaults (the CUDA kernels' ``version``/``tile``/``splits``); everything else —
names, order, kinds and defaults of the parameters — must match the protocol exactly. The classes
are checked whether or not their device works here (importing them never fails)."""

import inspect

import pytest

from minicnn.backends import DEVICES, get_backend, is_available
from minicnn.backends.cuda_backend import CudaBackend
from minicnn.backends.emu_backend import EmuBackend
from minicnn.backends.interface import Backend, kernel_names
from minicnn.backends.numpy_backend import CpuBackend

CLASSES = {"cpu": CpuBackend, "emu": EmuBackend, "cuda": CudaBackend}


def test_every_device_has_a_class():
    assert set(CLASSES) == set(DEVICES)


def test_the_protocol_lists_the_kernels():
    names = kernel_names()
    for family in (
        "relu",
        "conv2d",
        "max_pool2d",
        "avg_pool2d",
        "adaptive_avg_pool2d",
        "local_response_norm",
        "batch_norm",
    ):
        assert any(n.startswith(family + "_") for n in names), family
    for name in names:  # a one-line statement of the math (or of what it does) for each
        assert (getattr(Backend, name).__doc__ or "").strip(), f"{name} has no docstring"


def _parameters(fn):
    return list(inspect.signature(fn).parameters.values())


def _comparable(p):
    return p.name, p.kind, p.default


@pytest.mark.parametrize("device", list(CLASSES))
def test_class_implements_every_method_with_the_protocols_signature(device):
    cls = CLASSES[device]
    assert cls.name == device
    for name in kernel_names():
        assert hasattr(cls, name), f"{cls.__name__} lacks {name}"
        want = _parameters(getattr(Backend, name))
        got = _parameters(getattr(cls, name))
        extra = got[len(want) :]
        assert [_comparable(p) for p in got[: len(want)]] == [_comparable(p) for p in want], (
            f"{cls.__name__}.{name}{inspect.signature(getattr(cls, name))} != protocol "
            f"{inspect.signature(getattr(Backend, name))}"
        )
        for p in extra:
            assert p.kind == p.KEYWORD_ONLY and p.default is not p.empty, (
                f"{cls.__name__}.{name}: extra parameter {p.name} must be keyword-only with a "
                "default"
            )


@pytest.mark.parametrize("device", list(CLASSES))
def test_no_public_method_outside_the_protocol(device):
    public = {n for n, v in inspect.getmembers(CLASSES[device], callable) if not n.startswith("_")}
    assert public <= set(kernel_names()), public - set(kernel_names())


@pytest.mark.parametrize("device", list(CLASSES))
def test_get_backend_returns_one_instance(device):
    if not is_available(device):
        pytest.skip(f"{device} is not available here")
    backend = get_backend(device)
    assert isinstance(backend, CLASSES[device]) and isinstance(backend, Backend)
    assert get_backend(device) is backend
