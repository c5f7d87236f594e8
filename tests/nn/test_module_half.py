"""Module.half() / .bfloat16() / .float(): torch's casts of a whole model's floating-point state."""

import numpy as np
import pytest

import minicnn
from minicnn import nn


@pytest.mark.parametrize("cast, dtype", [("half", minicnn.float16), ("bfloat16", minicnn.bfloat16)])
def test_module_casts_floats_and_keeps_integer_buffers(cast, dtype):
    minicnn.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    before = {k: np.asarray(v).astype(np.float32) for k, v in model.state_dict().items()}
    assert getattr(model, cast)() is model
    state = model.state_dict()
    assert state["1.num_batches_tracked"].dtype == minicnn.int64
    for key, value in state.items():
        if key != "1.num_batches_tracked":
            assert value.dtype == dtype, key
            np.testing.assert_array_equal(np.asarray(value), before[key].astype(dtype))
    y = model(minicnn.randn(2, 3, 6, 6).to(dtype))
    assert y.dtype == dtype and y.shape == (2, 4, 4, 4)
    model.float()
    assert model[0].weight.dtype == minicnn.float32
