"""Counter-based random numbers: a normal deviate as a pure function of a key and a counter.

A stream-based generator hands out numbers in order, so a parameter's deviation depends on how many
numbers were drawn before it: add a varied parameter and every later one is reshuffled. Here each
number is computed from its own coordinates instead (Salmon JK et al. "Parallel random numbers: as
easy as 1, 2, 3", SC11, 2011): the key names what is drawn (a parameter under a trial seed and
stream), the counter says where (patient row, attempt, block, redraw), and Philox4x32-10 turns the
pair into 128 random bits. Counters and keys broadcast like numpy arrays, so a whole block of
patients times parameters is one call; the rounds run in a loop compiled by numba on the first draw
(the numpy version took twice as long per block, ``benchmarks/population_draws.py``).

Checked against Random123's known-answer vectors (``tests/kat_vectors``, ``philox4x32 10``):

>>> import numpy as np
>>> [f"{int(x):08x}" for x in philox4x32((np.uint64(0),) * 4, (np.uint64(0),) * 2)]
['6627e8d5', 'e169c58d', 'bc57ac4c', '9b00dbd8']
"""

from __future__ import annotations

import hashlib
from functools import cache

import numpy as np
from scipy.special import ndtri

# Philox4x32 multipliers and Weyl key increments (Salmon 2011, Random123 philox.h)
_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_W0, _W1 = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)
_LOW32 = np.uint64(0xFFFFFFFF)
_12, _20, _32 = np.uint64(12), np.uint64(20), np.uint64(32)
_ROUNDS = 10


def _philox_loop(c0, c1, c2, c3, k0, k1, out):
    """Philox4x32-10 of each entry of six flat uint64 arrays (32-bit words; a product of two fits
    in 64 bits, so it is exact) into ``out`` (4, n). Compiled by numba on first use."""
    for i in range(c0.size):
        x0, x1, x2, x3, y0, y1 = c0[i], c1[i], c2[i], c3[i], k0[i], k1[i]
        for _ in range(_ROUNDS):
            p0 = _M0 * x0
            p1 = _M1 * x2
            x0, x1, x2, x3 = (p1 >> _32) ^ x1 ^ y0, p1 & _LOW32, (p0 >> _32) ^ x3 ^ y1, p0 & _LOW32
            y0 = (y0 + _W0) & _LOW32
            y1 = (y1 + _W1) & _LOW32
        out[0, i], out[1, i], out[2, i], out[3, i] = x0, x1, x2, x3


@cache
def _compiled_philox():
    import numba  # on first draw, not at import: the command line starts without it

    return numba.njit(cache=True, nogil=True)(_philox_loop)


def philox4x32(counter, key) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Philox4x32-10 of ``counter`` (four 32-bit words) under ``key`` (two 32-bit words), each word a
    uint64 array (or scalar) holding a value below 2**32; the arrays broadcast. Returns four uint64
    arrays of 32-bit words."""
    words = np.broadcast_arrays(*(np.asarray(w, dtype=np.uint64) for w in (*counter, *key)))
    flat = [np.ascontiguousarray(w).reshape(-1) for w in words]
    out = np.empty((4, flat[0].size), dtype=np.uint64)
    _compiled_philox()(*flat, out)
    return tuple(out[k].reshape(words[0].shape) for k in range(4))


def standard_normal(counter, key) -> np.ndarray:
    """One standard normal deviate per counter: 52 of Philox's bits as the midpoint of one of 2**52
    equal cells of (0, 1) (exact in a double, never 0 or 1), through the normal quantile function
    (exact inversion, no rejection, so one counter is one deviate)."""
    x0, x1, _, _ = philox4x32(counter, key)
    bits = (x0 << _20) | (x1 >> _12)  # 52 bits
    return ndtri((bits.astype(np.float64) + 0.5) * 2.0 ** -52)


def name_key(name: str, seed: int, *scope: int) -> tuple[int, int]:
    """The two 32-bit key words of what is called ``name`` under ``seed`` and ``scope`` (e.g. the
    trial's stream and purpose): stable across processes and machines, unlike Python's ``hash``."""
    number = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")
    words = np.random.SeedSequence(seed, spawn_key=(*scope, number)).generate_state(2, np.uint32)
    return int(words[0]), int(words[1])
