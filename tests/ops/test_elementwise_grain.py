"""The elementwise passes (csrc/cpu/relu.h, arrays.h) stay on the caller's thread up to 64 Ki
values and split above (issue 16): NumPy's results at 1, 2 and 3 threads on both sides of the
threshold, channel slices (Cat's backward) included."""

import numpy as np
import pytest

from tests.kernel_devices import cpu_threads as threads

_C = pytest.importorskip("minicnn._C_cpu")

# 16x64x8x8 = 64 Ki values (one task); 3x70x25x27 (141,750) and 2x33x65x64 (274,560) several
SHAPES = [(16, 64, 8, 8), (3, 70, 25, 27), (2, 33, 65, 64)]


@pytest.mark.parametrize("shape", SHAPES)
def test_relu_add_and_concat_are_numpys_at_any_thread_count(shape):
    rng = np.random.default_rng(5)
    a, b = (rng.standard_normal(shape).astype(np.float32) for _ in range(2))
    wide = rng.standard_normal((shape[0], shape[1] + 7) + shape[2:]).astype(np.float32)
    part = wide[:, 3 : 3 + shape[1]]  # a channel slice: rows at a stride of their own
    for n in (1, 2, 3):
        with threads(n):
            y = _C.relu_forward_f32(a)
            np.testing.assert_array_equal(y, np.maximum(a, 0))
            np.testing.assert_array_equal(_C.relu_backward_f32(b, y), np.where(y <= 0, 0, b))
            np.testing.assert_array_equal(_C.add_f32(a, part), a + part)
            acc = a.copy()
            _C.add__f32(acc, part)
            np.testing.assert_array_equal(acc, a + part)
            cat = _C.concat_channels_f32([a, b, np.ascontiguousarray(part)])
            np.testing.assert_array_equal(cat, np.concatenate([a, b, part], axis=1))
