"""dl: pure-function JAX building blocks for the classic deep-learning curriculum."""

__version__ = "0.1.0"
