"""The package's version, in this one place: pyproject.toml reads it (``[tool.setuptools.dynamic]``),
and ``nablanet.__version__`` and ``nablanet --version`` show it."""

__version__ = "0.1.0"
