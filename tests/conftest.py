from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

import nablanet as nn


@pytest.fixture(autouse=True)
def _default_dtype_and_seed():
    """Each test starts with float32 defaults and a fixed global generator."""
    nn.set_default_dtype(np.float32)
    nn.manual_seed(0)
    yield
    nn.set_default_dtype(np.float32)
