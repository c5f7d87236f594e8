"""The random number generator behind minicnn's random ops (dropout, randn, initialisation)."""

from __future__ import annotations

import numpy as np

_generator = np.random.default_rng()


def manual_seed(seed: int):
    """Seed every random op of minicnn (like torch.manual_seed)."""
    global _generator
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"manual_seed: seed must be a non-negative integer, got {seed!r}")
    _generator = np.random.default_rng(int(seed))
    return _generator


def generator() -> np.random.Generator:
    return _generator


def get_rng_state() -> dict:
    return _generator.bit_generator.state


def set_rng_state(state: dict):
    _generator.bit_generator.state = state


# ---- device random numbers: Philox4x32-10 (csrc/kernels/random.cu) -------------------------------
_PHILOX_M = (0xD2511F53, 0xCD9E8D57)  # round multipliers
_PHILOX_W = (0x9E3779B9, 0xBB67AE85)  # key bumps (Weyl sequence)
_U32 = np.uint64(0xFFFFFFFF)


def draw_seed() -> int:
    """A 64-bit key for a device random kernel, drawn from the generator (so ``manual_seed`` and
    ``set_rng_state`` fix the kernel's numbers too)."""
    return int(_generator.integers(0, 2**64, dtype=np.uint64))


def philox4x32(counters: np.ndarray, seed: int) -> np.ndarray:
    """Philox4x32-10 of the 128-bit ``counters`` (an (n, 4) uint32 array) under the 64-bit key
    ``seed``: (n, 4) uint32. The NumPy reference of csrc/kernels/random.cu (Salmon et al. 2011;
    Random123's philox4x32_R(10, …))."""
    c = [np.asarray(counters[:, j], np.uint64) for j in range(4)]
    k0, k1 = seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF
    for round in range(10):
        if round:
            k0, k1 = (k0 + _PHILOX_W[0]) & 0xFFFFFFFF, (k1 + _PHILOX_W[1]) & 0xFFFFFFFF
        p0, p1 = c[0] * np.uint64(_PHILOX_M[0]), c[2] * np.uint64(_PHILOX_M[1])
        c = [
            (p1 >> np.uint64(32)) ^ c[1] ^ np.uint64(k0),
            p1 & _U32,
            (p0 >> np.uint64(32)) ^ c[3] ^ np.uint64(k1),
            p0 & _U32,
        ]
    return np.stack(c, axis=1).astype(np.uint32)


def dropout_threshold(p: float) -> int:
    """ceil(p · 2^32): a 32-bit random r keeps its element iff r >= this (r / 2^32 >= p)."""
    return int(np.ceil(np.float64(p) * 2.0**32))


def philox_dropout_mask(n: int, p: float, dtype, seed: int) -> np.ndarray:
    """The mask of csrc/kernels/random.cu's dropout_mask, in NumPy: element i is kept iff output
    i of the stream (lane i // 4, word i % 4) is >= ``dropout_threshold(p)``; kept elements hold
    1 / (1 − p) rounded to ``dtype``, the others 0."""
    lanes = (n + 3) // 4
    counters = np.zeros((lanes, 4), np.uint32)
    idx = np.arange(lanes, dtype=np.uint64)
    counters[:, 0], counters[:, 1] = idx & _U32, idx >> np.uint64(32)
    r = philox4x32(counters, seed).reshape(-1)[:n]
    scale = np.asarray(1, dtype) / np.asarray(1.0 - p, dtype)
    return np.where(r >= dropout_threshold(p), scale, np.asarray(0, dtype)).astype(dtype)
