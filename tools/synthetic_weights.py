"""gpt2q's deterministic synthetic GPT-2 weights, reproduced bit for bit in numpy.

The spec is src/model/synthetic_weights.h. For tensor NAME (canonical name, no
"transformer." prefix) element i in row-major order:
    u = splitmix64((fnv1a64(NAME) ^ seed) + i) >> 40      (24 random bits)
    r = float32(u) * 2^-23 - 1                            (exact, in [-1, 1))
    Linear/Conv1D weights, wte, wpe, score: r * 0.05f
    LayerNorm weight: 1 + r * 0.1f   (two fp32 roundings: the product, then the sum)
    biases and LayerNorm bias: r * 0.02f
All uint64 arithmetic wraps modulo 2^64, as in C++.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np

MASK64 = (1 << 64) - 1
_CHUNK = 1 << 22  # elements per numpy pass; keeps the uint64 temporaries small


def _nearest_f32(decimal: Fraction) -> np.float32:
    """The float32 a C++ literal like 0.05f denotes (round to nearest, once)."""
    f = np.float32(float(decimal))
    candidates = [np.nextafter(f, np.float32(-1)), f, np.nextafter(f, np.float32(2))]
    return min(candidates, key=lambda c: abs(Fraction(float(c)) - decimal))


WEIGHT_SCALE = _nearest_f32(Fraction(5, 100))
LN_SCALE = _nearest_f32(Fraction(1, 10))
BIAS_SCALE = _nearest_f32(Fraction(2, 100))
TWO_POW_M23 = np.float32(2.0**-23)
ONE = np.float32(1.0)


def fnv1a64(s: str) -> int:
    h = 0xCBF29CE484222325
    for byte in s.encode("utf-8"):
        h ^= byte
        h = (h * 0x100000001B3) & MASK64
    return h


def splitmix64(x: np.ndarray) -> np.ndarray:
    """Vectorised splitmix64 finaliser over a uint64 array (wrapping)."""
    assert x.dtype == np.uint64
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def role_of(name: str) -> str:
    is_bias = name.endswith(".bias")
    if "ln_" in name:
        return "ln_bias" if is_bias else "ln_weight"
    return "bias" if is_bias else "weight"


def _values_from_r(role: str, r: np.ndarray) -> np.ndarray:
    if role == "weight":
        return r * WEIGHT_SCALE
    if role == "ln_weight":
        return (r * LN_SCALE) + ONE  # float32 product rounded, then the sum rounded
    return r * BIAS_SCALE  # bias and ln_bias


def synthetic_values(name: str, seed: int, indices: np.ndarray) -> np.ndarray:
    """Values of tensor `name` at flat `indices` (uint64 array) as float32."""
    key = np.uint64((fnv1a64(name) ^ seed) & MASK64)
    with np.errstate(over="ignore"):
        x = key + indices.astype(np.uint64)
    u = splitmix64(x) >> np.uint64(40)
    r = u.astype(np.float32) * TWO_POW_M23 - ONE
    assert r.dtype == np.float32
    out = _values_from_r(role_of(name), r)
    assert out.dtype == np.float32
    return out


def synthetic_tensor(name: str, shape: tuple[int, ...], seed: int) -> np.ndarray:
    n = int(np.prod(shape, dtype=np.int64))
    out = np.empty(n, dtype=np.float32)
    for start in range(0, n, _CHUNK):
        stop = min(n, start + _CHUNK)
        out[start:stop] = synthetic_values(name, seed, np.arange(start, stop, dtype=np.uint64))
    return out.reshape(shape)


def canonical_shapes(cfg, num_labels: int = 0) -> list[tuple[str, tuple[int, ...]]]:
    """Tensor names and HF-layout shapes in the order gpt2q builds them."""
    C, V, P = cfg.n_embd, cfg.vocab_size, cfg.n_positions
    inner = cfg.n_inner if cfg.n_inner is not None else 4 * C
    shapes = [("wte.weight", (V, C)), ("wpe.weight", (P, C))]
    for layer in range(cfg.n_layer):
        p = f"h.{layer}."
        shapes += [
            (p + "ln_1.weight", (C,)), (p + "ln_1.bias", (C,)),
            (p + "attn.c_attn.weight", (C, 3 * C)), (p + "attn.c_attn.bias", (3 * C,)),
            (p + "attn.c_proj.weight", (C, C)), (p + "attn.c_proj.bias", (C,)),
            (p + "ln_2.weight", (C,)), (p + "ln_2.bias", (C,)),
            (p + "mlp.c_fc.weight", (C, inner)), (p + "mlp.c_fc.bias", (inner,)),
            (p + "mlp.c_proj.weight", (inner, C)), (p + "mlp.c_proj.bias", (C,)),
        ]
    shapes += [("ln_f.weight", (C,)), ("ln_f.bias", (C,))]
    if num_labels > 0:
        shapes.append(("score.weight", (num_labels, C)))
    return shapes


def synthetic_state_dict(cfg, seed: int, num_labels: int = 0) -> dict[str, np.ndarray]:
    """Canonical name -> float32 array, for the whole model."""
    return {name: synthetic_tensor(name, shape, seed) for name, shape in canonical_shapes(cfg, num_labels)}


def _self_check() -> None:
    # splitmix64(0) is the published first output of the generator seeded with 0.
    assert int(splitmix64(np.array([0], dtype=np.uint64))[0]) == 0xE220A8397B1DCDAF
    # FNV-1a 64 test vectors (empty string, "a").
    assert fnv1a64("") == 0xCBF29CE484222325
    assert fnv1a64("a") == 0xAF63DC4C8601EC8C


_self_check()
