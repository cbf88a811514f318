"""Where randomness comes from.

Every random choice in nablanet draws from a ``numpy.random.Generator``. Functions and layers that
need randomness take an ``rng`` argument (a Generator, an int seed, or ``None``); ``None`` means the
global generator, which ``manual_seed`` resets, as ``torch.manual_seed`` does.

Seeds are ints. A negative seed counts modulo 2⁶⁴, as in ``torch.manual_seed`` (so ``-1`` is the
same seed as ``2**64 - 1``); below −2⁶³ PyTorch refuses it, and so does nablanet. Every entry
point that takes a seed (``manual_seed``, ``rng=``, the data loaders' ``seed=``, ``fit(seed=)``)
goes through ``check_seed``, so they all accept the same seeds and refuse the others alike.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_global_rng: np.random.Generator = np.random.default_rng(0)

RNGLike = np.random.Generator | int | None

_LOWEST = -(2**63)


def check_seed(seed: Any, who: str = "seed") -> int:
    """``seed`` as the non-negative int NumPy takes: an int, negative ones modulo 2⁶⁴ (PyTorch's rule).

    ``who`` names the argument in the error (``"manual_seed(seed)"``, ``"fit(seed=...)"``).
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"{who} received {seed!r} ({type(seed).__name__}); expected an int such as 0")
    value = int(seed)
    if value < _LOWEST:
        raise ValueError(
            f"{who} received {value}; expected an int >= -2**63 (negative seeds count modulo 2**64, as in "
            "torch.manual_seed). Fix: pass a seed such as 0 or 42."
        )
    return value % 2**64 if value < 0 else value


def manual_seed(seed: int) -> np.random.Generator:
    """Reset the global generator to ``numpy.random.default_rng(seed)`` and return it.

    A negative seed counts modulo 2⁶⁴, as in ``torch.manual_seed``: ``manual_seed(-1)`` equals
    ``manual_seed(2**64 - 1)``.
    """
    global _global_rng
    _global_rng = np.random.default_rng(check_seed(seed, "manual_seed(seed)"))
    return _global_rng


def get_rng(rng: RNGLike = None) -> np.random.Generator:
    """Return ``rng`` as a Generator: an int seeds a new one (see ``check_seed``); ``None`` gives the global one."""
    if rng is None:
        return _global_rng
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, int | np.integer) and not isinstance(rng, bool):
        return np.random.default_rng(check_seed(rng, "rng (an int seed)"))
    raise TypeError(
        f"rng must be a numpy.random.Generator, an int seed or None; got {type(rng).__name__}. "
        "Pass e.g. rng=np.random.default_rng(0) or rng=0."
    )
