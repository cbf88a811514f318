"""Where randomness comes from.

Every random choice in nablanet draws from a ``numpy.random.Generator``. Functions and layers that
need randomness take an ``rng`` argument (a Generator, an int seed, or ``None``); ``None`` means the
global generator, which ``manual_seed`` resets, as ``torch.manual_seed`` does.
"""

from __future__ import annotations

import numpy as np

_global_rng: np.random.Generator = np.random.default_rng(0)

RNGLike = np.random.Generator | int | None


def manual_seed(seed: int) -> np.random.Generator:
    """Reset the global generator to ``numpy.random.default_rng(seed)`` and return it."""
    global _global_rng
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"manual_seed(seed) got {type(seed).__name__}; expected an int such as 0")
    _global_rng = np.random.default_rng(int(seed))
    return _global_rng


def get_rng(rng: RNGLike = None) -> np.random.Generator:
    """Return ``rng`` as a Generator: an int seeds a new one; ``None`` gives the global one."""
    if rng is None:
        return _global_rng
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, int | np.integer) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(
        f"rng must be a numpy.random.Generator, an int seed or None; got {type(rng).__name__}. "
        "Pass e.g. rng=np.random.default_rng(0) or rng=0."
    )
