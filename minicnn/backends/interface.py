"""The backend interface: what every device ("cpu", "emu", "cuda") implements.

An op (minicnn/ops/*.py) computes its geometry once, then calls ``ctx.backend.<kernel>`` with raw
arrays of the device's array module (``xp``: NumPy or CuPy) — no Tensors, no autograd. Forward
kernels return their output (plus what their backward needs, e.g. max-pool indices); backward
kernels take ``dout`` and return the input gradients (``dx``, ``dw``, …). Letters: N batch,
C channels, H x W input, K output channels, R x S kernel or window, P x Q output, G groups.

The implementations:

    CpuBackend    numpy_backend.py      NumPy, with C++ helpers (minicnn._C_cpu)
    EmuBackend    emu_backend.py        our CUDA kernels on the CPU emulator (minicnn._C_emu)
    CudaBackend   cuda_backend.py       our CUDA kernels on the GPU (minicnn._C_cuda)

(the last two share ``KernelBackend``, _kernel_backend.py). A backend may add keyword-only
arguments with defaults (the kernels' ``version`` and ``tile``, which tests pin); everything else
matches the signatures below exactly (tests/core/test_backend_interface.py checks it).

Dtypes: float32 and float64 everywhere; float16 and bfloat16 (``ml_dtypes.bfloat16``) too, computed
in float32 with one rounding of each output. Every array of a call has the dtype of its first
input, except batch norm's (C,) vectors (weight, bias, running_mean, running_var, the saved mean
and invstd, dweight, dbias), which are float32 beside float16 / bfloat16 data (cuDNN's mixed
batch norm). On "emu" and "cuda" conv2d in float16 / bfloat16 runs on tensor cores (its version
4), and float32 conv2d does too, in TF32, when ``minicnn.backends.allow_tf32`` is True.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, List, Optional, Protocol, Tuple, runtime_checkable

from ..ops.geometry import Conv2dGeometry, Pool2dGeometry

Array = Any  # numpy.ndarray on "cpu" and "emu", cupy.ndarray on "cuda"
Needs = Tuple[bool, bool, bool]


@runtime_checkable
class Backend(Protocol):
    """One device's kernels. Methods below state their math in one line; docs in the ops."""

    name: str  # the device: "cpu", "emu" or "cuda"
    xp: ModuleType  # its array module: numpy or cupy

    @classmethod
    def unavailable_reason(cls) -> Optional[str]:
        """None when the device works here, else why not (get_backend raises with it)."""

    # ---- arrays and the device ----------------------------------------------------------------
    def to_numpy(self, a: Array) -> Any:
        """A NumPy array of a's values (shares memory where the device is the host)."""

    def from_numpy(self, a: Any) -> Array:
        """An array of this device holding a NumPy array's values (C-contiguous)."""

    def synchronize(self) -> None:
        """Wait until the work queued on this device is done."""

    def set_num_threads(self, n: int) -> None:
        """Threads of the host-side helpers (cpu: the C++ pool; emu and cuda have none)."""

    def get_num_threads(self) -> int:
        """Threads of the host-side helpers (1 where there is no pool)."""

    # ---- generic array work (cpu: on the helpers' pool; emu, cuda: xp) ------------------------
    def add(self, a: Any, b: Any) -> Array:
        """a + b with NumPy's broadcasting and dtypes (a residual add)."""

    def concatenate(self, arrays: Any, axis: int) -> Array:
        """xp.concatenate(arrays, axis) (DenseNet's and GoogLeNet's channel concatenations)."""

    # ---- relu ---------------------------------------------------------------------------------
    def relu_forward(self, x: Array) -> Array:
        """y = max(x, 0) (NaN stays NaN, -0.0 stays -0.0)."""

    def relu_backward(self, dout: Array, y: Array) -> Array:
        """dx = dout where y > 0, else 0."""

    # ---- convolution --------------------------------------------------------------------------
    def conv2d_forward(self, x: Array, w: Array, b: Optional[Array], g: Conv2dGeometry) -> Array:
        """y[n,k,p,q] = b[k] + Σ_{c,r,s} w[k,c,r,s] x[n, gC/G + c, p sh-ph + r dh, q sw-pw + s dw]
        with g the group of output channel k."""

    def conv2d_backward_data(self, dout: Array, w: Array, g: Conv2dGeometry) -> Array:
        """dx (N, C, H, W) = the transposed convolution of dout (N, K, P, Q) with w."""

    def conv2d_backward_weight(self, dout: Array, x: Array, g: Conv2dGeometry) -> Array:
        """dw[k,c,r,s] = Σ_{n,p,q} dout[n,k,p,q] x[n, gC/G + c, p sh-ph + r dh, q sw-pw + s dw]."""

    def conv2d_backward_bias(self, dout: Array) -> Array:
        """db[k] = Σ_{n,p,q} dout[n,k,p,q]."""

    def conv2d_backward(
        self, dout: Array, x: Array, w: Array, g: Conv2dGeometry, needs: Needs = (True, True, True)
    ) -> Tuple[Optional[Array], ...]:
        """(dx, dw, db), each only where ``needs`` says so (else None)."""

    # ---- pooling ------------------------------------------------------------------------------
    def max_pool2d_forward(self, x: Array, g: Pool2dGeometry) -> Tuple[Array, Array]:
        """(y, argmax): y = max of each window (padding -inf), argmax its flat h W + w (int64)."""

    def max_pool2d_backward(self, dout: Array, argmax: Array, g: Pool2dGeometry) -> Array:
        """dx[n, c, argmax[n,c,p,q]] += dout[n,c,p,q] over windows that hold an input pixel."""

    def avg_pool2d_forward(self, x: Array, g: Pool2dGeometry) -> Array:
        """y[p, q] = Σ_window x / divisor[p, q] (padding reads 0; the divisor options in g)."""

    def avg_pool2d_backward(self, dout: Array, g: Pool2dGeometry) -> Array:
        """dx[h, w] = Σ over the windows (p, q) reading (h, w) of dout[p, q] / divisor[p, q]."""

    def adaptive_avg_pool2d_forward(self, x: Array, g: Pool2dGeometry) -> Array:
        """y[p, q] = mean of x over rows [⌊pH/P⌋, ⌈(p+1)H/P⌉) and columns likewise."""

    def adaptive_avg_pool2d_backward(self, dout: Array, g: Pool2dGeometry) -> Array:
        """dx = Σ over the bins holding a pixel of dout / (bin area)."""

    # ---- local response normalization ---------------------------------------------------------
    def local_response_norm_forward(
        self, x: Array, size: int, alpha: float, beta: float, k: float
    ) -> Tuple[Array, Array]:
        """(y, scale): scale = k + α/size Σ_{j in window(c)} x_j², y = x scale^-β."""

    def local_response_norm_backward(
        self, dout: Array, x: Array, scale: Array, size: int, alpha: float, beta: float
    ) -> Array:
        """dx_i = dy_i s_i^-β − (2αβ/size) x_i Σ_{c: i in window(c)} dy_c x_c s_c^(-β-1)."""

    # ---- batch normalization ------------------------------------------------------------------
    def batch_norm_forward_training(
        self,
        x: Array,
        weight: Optional[Array],
        bias: Optional[Array],
        running_mean: Optional[Array],
        running_var: Optional[Array],
        momentum: float,
        eps: float,
        relu: bool = False,
    ) -> Tuple[Array, Array, Array]:
        """(y, mean, invstd): y = weight (x − E[x]) / sqrt(Var[x] + eps) + bias, then max(0, y)
        when ``relu`` (ops/norm.py's BatchNormReLU); running statistics: lerp."""

    def batch_norm_forward_inference(
        self,
        x: Array,
        weight: Optional[Array],
        bias: Optional[Array],
        running_mean: Array,
        running_var: Array,
        eps: float,
        relu: bool = False,
    ) -> Tuple[Array, Array, Array]:
        """(y, mean, invstd): y = weight (x − running_mean) / sqrt(running_var + eps) + bias,
        then max(0, y) when ``relu``."""

    def batch_norm_backward(
        self,
        dout: Array,
        x: Array,
        weight: Optional[Array],
        mean: Array,
        invstd: Array,
        training: bool,
        relu_output: Optional[Array] = None,
    ) -> Tuple[Array, Array, Array]:
        """(dx, dweight, dbias): training: dx = weight invstd (dy − mean(dy) − x̂ mean(dy x̂)),
        else dx = dy weight invstd (fixed statistics); dy = dout, or dout · [y > 0] when
        ``relu_output`` is the output y of a forward with relu=True."""

    # ---- random numbers, optimizer updates (no host round-trip on the device) -----------------
    def dropout_mask(self, shape: Tuple[int, ...], p: float, dtype: Any) -> Array:
        """m / (1 − p) of ``dtype``, m ~ Bernoulli(1 − p) drawn from minicnn.random's generator."""

    def sgd_update(
        self,
        params: List[Array],
        grads: List[Array],
        momentum_bufs: List[Optional[Array]],
        *,
        lr: float,
        momentum: float,
        dampening: float,
        weight_decay: float,
        nesterov: bool,
        first_step: bool,
    ) -> None:
        """In place, every tensor of one group: torch.optim.SGD's step (minicnn/optim/sgd.py)."""

    def adam_update(
        self,
        params: List[Array],
        grads: List[Array],
        exp_avgs: List[Array],
        exp_avg_sqs: List[Array],
        *,
        step: int,
        lr: float,
        beta1: float,
        beta2: float,
        eps: float,
        weight_decay: float,
        decoupled: bool,
        max_exp_avg_sqs: Optional[List[Array]] = None,
    ) -> None:
        """In place, every tensor of one group: Adam's / AdamW's step (minicnn/optim/adam.py)."""


def kernel_names() -> Tuple[str, ...]:
    """The names of every method of the interface (the test checks each backend against them)."""
    return tuple(
        n
        for n, v in vars(Backend).items()
        if not n.startswith("_") and (callable(v) or isinstance(v, classmethod))
    )
