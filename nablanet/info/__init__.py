"""Information theory for classifiers: entropy, cross entropy, KL divergence, and Huffman coding.

The source notes' Appendix A, as functions. H(q) is the fewest bits per symbol any code can spend on
a source q; H(q, p) is what a code built for the estimate p spends on it; their difference
KL(q‖p) = H(q, p) − H(q) ≥ 0 is the price of the wrong estimate. A classifier's cross-entropy loss is
H(y, p) for the one-hot label y: the bits a code built from its probabilities spends on the labels.
Huffman codes, Huffman codes on blocks of m bits, and arithmetic codes (within 2 bits of
Σₙ −log₂ p(sₙ), with a model that may change per symbol, such as a classifier's probabilities per
sample) make those bounds measurable.
See docs/information.md.
"""

from nablanet.info.arithmetic import (
    ARITHMETIC_FREQUENCY_BITS,
    ARITHMETIC_MAX_OUTCOMES,
    ARITHMETIC_STATE_BITS,
    arithmetic_decode,
    arithmetic_encode,
    arithmetic_overhead_bound,
)
from nablanet.info.coding import (
    MAX_BLOCK_BITS,
    BlockCoding,
    bernoulli_stream,
    block_code,
    block_probabilities,
    decode,
    encode,
    expected_length,
    huffman_code,
    to_blocks,
)
from nablanet.info.measures import (
    binary_cross_entropy,
    binary_cross_entropy_vjp,
    binary_entropy,
    binary_entropy_vjp,
    binary_kl_divergence,
    binary_kl_divergence_vjp,
    cross_entropy,
    cross_entropy_vjp,
    entropy,
    entropy_vjp,
    kl_divergence,
    kl_divergence_vjp,
)

__all__ = [
    "ARITHMETIC_FREQUENCY_BITS",
    "ARITHMETIC_MAX_OUTCOMES",
    "ARITHMETIC_STATE_BITS",
    "MAX_BLOCK_BITS",
    "BlockCoding",
    "arithmetic_decode",
    "arithmetic_encode",
    "arithmetic_overhead_bound",
    "bernoulli_stream",
    "binary_cross_entropy",
    "binary_cross_entropy_vjp",
    "binary_entropy",
    "binary_entropy_vjp",
    "binary_kl_divergence",
    "binary_kl_divergence_vjp",
    "block_code",
    "block_probabilities",
    "cross_entropy",
    "cross_entropy_vjp",
    "decode",
    "encode",
    "entropy",
    "entropy_vjp",
    "expected_length",
    "huffman_code",
    "kl_divergence",
    "kl_divergence_vjp",
    "to_blocks",
]
