"""Counter-based random numbers: a normal deviate as a pure function of a key and a counter.

A stream-based generator hands out numbers in order, so a parameter's deviation depends on how many
numbers were drawn before it: add a varied parameter and every later one is reshuffled. Here each
number is computed from its own coordinates instead (Salmon JK et al. "Parallel random numbers: as
easy as 1, 2, 3", SC11, 2011): the key names what is drawn (a parameter under a trial seed and
stream), the counter says where (patient row, attempt, block, redraw), and Philox4x32-10 turns the
pair into 128 random bits. The computation is vectorised over numpy arrays, so a whole block of
patients times parameters is one call.

Checked against Random123's known-answer vectors (``tests/kat_vectors``, ``philox4x32 10``):

>>> import numpy as np
>>> [f"{int(x):08x}" for x in philox4x32((np.uint64(0),) * 4, (np.uint64(0),) * 2)]
['6627e8d5', 'e169c58d', 'bc57ac4c', '9b00dbd8']
"""

from __future__ import annotations

import hashlib

import numpy as np
from scipy.special import ndtri

# Philox4x32 multipliers and Weyl key increments (Salmon 2011, Random123 philox.h)
_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_W0, _W1 = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)
_LOW32 = np.uint64(0xFFFFFFFF)
_32 = np.uint64(32)
_ROUNDS = 10


def philox4x32(counter, key) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Philox4x32-10 of ``counter`` (four 32-bit words) under ``key`` (two 32-bit words), each word a
    uint64 array (or scalar) holding a value below 2**32; the arrays broadcast. Returns four uint64
    arrays of 32-bit words. Products of two 32-bit words fit in uint64, so numpy computes them exactly."""
    c0, c1, c2, c3 = (np.asarray(c, dtype=np.uint64) for c in counter)
    k0, k1 = (np.asarray(k, dtype=np.uint64) for k in key)
    for _ in range(_ROUNDS):
        p0, p1 = _M0 * c0, _M1 * c2
        c0, c1, c2, c3 = (p1 >> _32) ^ c1 ^ k0, p1 & _LOW32, (p0 >> _32) ^ c3 ^ k1, p0 & _LOW32
        k0, k1 = (k0 + _W0) & _LOW32, (k1 + _W1) & _LOW32
    return c0, c1, c2, c3


def standard_normal(counter, key) -> np.ndarray:
    """One standard normal deviate per counter: 52 of Philox's bits as a uniform strictly inside
    (0, 1) (the midpoints of 2**52 equal cells, each exact in a double, so never 0 or 1), through the
    normal quantile function (exact inversion, no rejection, so one counter is one deviate)."""
    x0, x1, _, _ = philox4x32(counter, key)
    bits = (x0 << np.uint64(20)) | (x1 >> np.uint64(12))  # 52 bits
    return ndtri((bits.astype(np.float64) + 0.5) * 2.0 ** -52)


def name_key(name: str, seed: int, *scope: int) -> tuple[int, int]:
    """The two 32-bit key words of what is called ``name`` under ``seed`` and ``scope`` (e.g. the
    trial's stream and purpose): stable across processes and machines, unlike Python's ``hash``."""
    number = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")
    words = np.random.SeedSequence(seed, spawn_key=(*scope, number)).generate_state(2, np.uint32)
    return int(words[0]), int(words[1])
