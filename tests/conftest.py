"""Strict numerics for every test: no silent dtype promotion (equinox's habit)."""

import jax

jax.config.update("jax_numpy_dtype_promotion", "strict")
