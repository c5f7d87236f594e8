"""Bad input and failures around the CUDA kernels: rejected or converted before any launch, and a
failed launch or a fault inside a kernel raised as a Python exception naming the kernel (on "emu"
also the block and thread), never a crash or a hang. Plus what ``device="cuda"`` says where it
can't run. (The backend interface itself: tests/core/test_backend_interface.py.)"""

import os
import subprocess
import sys

import numpy as np
import pytest

import minicnn
from minicnn.backends import get_backend, is_available
from minicnn.ops.geometry import Conv2dGeometry, Pool2dGeometry

from kernel_devices import KERNEL_DEVICES, on

devices = pytest.mark.parametrize("device", KERNEL_DEVICES)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


cpu = get_backend("cpu")


# ---- faults inside kernels and failed launches ---------------------------------------------------
def emu_C():
    return get_backend("emu").C


def test_kernel_fault_names_kernel_block_and_thread():
    with pytest.raises(
        RuntimeError,
        match=r"kernel selftest_trap_kernel: block \(2,0,0\) thread \(37,0,0\): "
        r"__trap\(\) called",
    ):
        emu_C()._selftest_trap(4, 64, 2, 37)


def test_divergent_barrier_is_an_error_not_a_hang():
    with pytest.raises(
        RuntimeError,
        match=r"kernel selftest_divergent_barrier_kernel: .*divergent barrier.*"
        r"thread \(5,0,0\), which has exited",
    ):
        emu_C()._selftest_divergent_barrier(64, 5)


@devices
def test_bad_launch_configuration_names_the_kernel(device):
    with pytest.raises(
        RuntimeError, match="kernel selftest_trap_kernel: .*(configuration|Configuration)"
    ):
        get_backend(device).C._selftest_trap(1, 2048)


def test_kernels_run_normally_after_a_fault():
    with pytest.raises(RuntimeError):
        emu_C()._selftest_trap(2, 32, 1, 0)
    x = np.arange(-3.0, 3.0)
    np.testing.assert_array_equal(get_backend("emu").relu_forward(x), np.maximum(x, 0))


# ---- bad arguments: rejected before any launch ---------------------------------------------------
@devices
def test_wrong_dtype_or_array_type_is_rejected(device):
    backend = get_backend(device)
    with pytest.raises(TypeError, match="relu_forward: x must be float32 or float64"):
        backend.relu_forward(on(device, np.arange(4)))
    with pytest.raises(
        TypeError, match=f"x must be a .* array on device '{device}', got builtins.list"
    ):
        backend.relu_forward([1.0, 2.0])
    if device == "cuda":
        with pytest.raises(TypeError, match="got numpy.ndarray"):
            backend.relu_forward(np.ones(3))


@devices
def test_mismatched_shapes_are_rejected(device):
    backend = get_backend(device)
    dout, y = on(device, np.ones((2, 3)), np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"relu_backward: y must have shape \(2, 3\)"):
        backend.relu_backward(dout, y)
    g = Pool2dGeometry.of((1, 3, 4, 4), (2, 2), (2, 2))
    with pytest.raises(ValueError, match=r"x must have shape \(1, 3, 4, 4\)"):
        backend.max_pool2d_forward(on(device, np.ones((3, 4, 4))), g)
    with pytest.raises(ValueError, match=r"dout must have shape \(1, 3, 2, 2\)"):
        backend.avg_pool2d_backward(on(device, np.ones((1, 2, 2, 2))), g)
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\)"):
        backend.batch_norm_forward_training(
            on(device, np.ones((2, 3, 2, 2))), on(device, np.ones(4)), None, None, None, 0.1, 1e-5
        )


@devices
def test_other_dtypes_and_layouts_are_converted(device):
    """Secondary inputs take the first input's dtype; non-contiguous arrays are copied first."""
    backend = get_backend(device)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 5))
    xt = on(device, x.transpose(0, 1, 3, 2).copy()).transpose(0, 1, 3, 2)  # a non-contiguous view
    assert not xt.flags.c_contiguous
    g = Pool2dGeometry.of(x.shape, (2, 2), (2, 2))
    y, argmax = backend.max_pool2d_forward(xt, g)
    y_ref, argmax_ref = cpu.max_pool2d_forward(x, g)
    np.testing.assert_array_equal(backend.to_numpy(y), y_ref)
    dout = rng.standard_normal(y.shape).astype(np.float32)
    dx = backend.max_pool2d_backward(on(device, dout), argmax.astype(np.int32), g)
    assert dx.dtype == np.float32
    np.testing.assert_allclose(backend.to_numpy(dx), cpu.max_pool2d_backward(dout, argmax_ref, g))
    rm = on(device, np.zeros(6))[::2]  # a strided running buffer is still updated in place
    backend.batch_norm_forward_training(on(device, x), None, None, rm, None, 1.0, 1e-5)
    np.testing.assert_allclose(backend.to_numpy(rm), x.mean(axis=(0, 2, 3)), rtol=1e-12)


def test_read_only_running_stats_are_rejected():
    rm = np.zeros(3)
    rm.flags.writeable = False
    with pytest.raises(ValueError, match="running_mean is read-only"):
        get_backend("emu").batch_norm_forward_training(
            np.ones((2, 3, 2, 2)), None, None, rm, None, 0.1, 1e-5
        )


def test_bindings_check_what_would_read_out_of_bounds():
    C = emu_C()
    x = np.ones(4)
    with pytest.raises(ValueError, match="sizes must be >= 0"):
        C.relu_forward("float64", x.ctypes.data, x.ctypes.data, -1, 0)
    with pytest.raises(ValueError, match="pointer is null"):
        C.relu_forward("float64", 0, x.ctypes.data, 4, 0)
    with pytest.raises(TypeError, match="float32, float64, float16 or bfloat16, got int64"):
        C.relu_forward("int64", x.ctypes.data, x.ctypes.data, 4, 0)
    with pytest.raises(TypeError):  # only the checked Pool2dArgs of pool2d_check, no tuple
        C.max_pool2d_forward(
            "float64", x.ctypes.data, x.ctypes.data, x.ctypes.data, (1, 1, 2, 2), 0
        )
    g = C.pool2d_check(Pool2dGeometry.of((1, 1, 2, 2), (2, 2), (2, 2)))
    with pytest.raises(ValueError, match="pointer is null"):
        C.max_pool2d_forward("float64", x.ctypes.data, 0, x.ctypes.data, g, 0)
    with pytest.raises(ValueError, match="pool2d: sizes and padding must be >= 0"):
        C.pool2d_check(
            dict(N=1, C=1, H=-2, W=2, R=1, S=1, P=1, Q=1, sh=1, sw=1, ph=0, pw=0, dh=1, dw=1)
        )
    with pytest.raises(ValueError, match="version must be 1"):
        get_backend("emu").max_pool2d_backward(
            np.ones((1, 1, 1, 1)),
            np.zeros((1, 1, 1, 1), np.int64),
            Pool2dGeometry.of((1, 1, 2, 2), (2, 2), (2, 2)),
            version=3,
        )


def test_ints_that_overflow_a_c_int_are_a_clear_error():
    """Issue 17: an LRN size beyond a C int was pybind11's signature dump; now it names it."""
    x = np.ones((1, 3, 2, 2))
    backend = get_backend("emu")
    with pytest.raises(
        ValueError,
        match=r"local_response_norm_forward: size = 4294967296 does not fit "
        r"a 32-bit int",
    ):
        backend.local_response_norm_forward(x, 2**32, 1e-4, 0.75, 1.0)
    with pytest.raises(ValueError, match=r"local_response_norm_backward: size = 2147483648"):
        backend.local_response_norm_backward(x, x, x, 2**31, 1e-4, 0.75)
    with pytest.raises(ValueError, match=r"conv2d_forward: tile = -4294967296 does not fit"):
        backend.conv2d_forward(
            np.ones((1, 1, 3, 3)),
            np.ones((1, 1, 1, 1)),
            None,
            Conv2dGeometry.of((1, 1, 3, 3), (1, 1, 1, 1)),
            tile=-(2**32),
        )
    # through the functional API: the same clear error (cpu computes it: NumPy has no int limit)
    t = minicnn.tensor(x, device="emu")
    with pytest.raises(ValueError, match="size = 4294967296"):
        minicnn.functional.local_response_norm(t, 2**32)


def test_empty_batches_launch_nothing():
    backend = get_backend("emu")
    x = np.ones((0, 3, 4, 4))
    y, argmax = backend.max_pool2d_forward(x, Pool2dGeometry.of(x.shape, (2, 2), (2, 2)))
    assert y.shape == argmax.shape == (0, 3, 2, 2)
    g = Pool2dGeometry.adaptive((1, 2, 3, 3), (0, 2))
    assert backend.adaptive_avg_pool2d_forward(np.ones((1, 2, 3, 3)), g).shape == (1, 2, 0, 2)
    assert backend.relu_forward(np.ones((0,))).shape == (0,)


# ---- device availability -------------------------------------------------------------------------
@pytest.mark.skipif(is_available("cuda"), reason="device 'cuda' works here")
def test_cuda_without_a_usable_gpu_says_why_and_suggests_emu():
    with pytest.raises(
        RuntimeError, match=r"device 'cuda' is not available here: .+ use device='emu'"
    ):
        minicnn.tensor([1.0], device="cuda")
    model = minicnn.nn.Linear(2, 2)
    with pytest.raises(RuntimeError, match="device='emu'"):
        model.to("cuda")
    assert model.weight.device == "cpu"


def run_python(code, **env):
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **env},
    )


def test_import_needs_no_cupy_and_no_cuda_extension():
    code = (
        "import sys; sys.modules['cupy'] = None; sys.modules['minicnn._C_cuda'] = None\n"
        "import minicnn\n"
        "assert minicnn.tensor([1.0, -1.0], device='emu').relu().tolist() == [1.0, 0.0]\n"
        "try:\n    minicnn.tensor([1.0], device='cuda')\n"
        "except RuntimeError as e:\n    print(e)\n"
    )
    r = run_python(code)
    assert r.returncode == 0, r.stderr
    assert "CuPy is not installed" in r.stdout and "minicnn._C_cuda is not built" in r.stdout
    assert "device='emu'" in r.stdout


def test_emu_extension_override_that_does_not_exist_is_a_clear_error():
    r = run_python(
        "import minicnn\nminicnn.tensor([1.0], device='emu')",
        MINICNN_EMU_EXTENSION="/nonexistent.so",
    )
    assert r.returncode != 0
    assert "device 'emu' is not available here" in r.stderr and "/nonexistent.so" in r.stderr
