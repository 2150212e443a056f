"""Gradient clipping as optax transformations (stateless: their state is ``optax.EmptyState``).

Chain them before an optimizer: ``optax.chain(clip_by_global_norm(1.0), sgd(0.1))``.
"""

import jax
import jax.numpy as jnp
import optax


def global_norm(tree: optax.Updates) -> jax.Array:
    """``||g|| = sqrt(sum over all leaves and elements of g^2)``: [] float32.

    Accumulated in float32 whatever the leaf dtypes, so bfloat16 leaves neither overflow nor mix.
    """
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return jnp.zeros([], jnp.float32)
    return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in leaves))


def clip_by_global_norm(max_norm: float) -> optax.GradientTransformation:
    """Rescales the whole update so that its global norm is at most ``max_norm``.

    Pascanu, Mikolov & Bengio 2013, Algorithm 1: if ``||g|| >= max_norm`` then
    ``g <- max_norm / ||g|| * g``. Written as ``g * max_norm / max(||g||, max_norm)``, which is the
    same map but has no 0/0 at ``g = 0`` and keeps the direction of ``g``.
    """

    def update_fn(updates, state, params=None):
        del params
        scale = max_norm / jnp.maximum(global_norm(updates), max_norm)
        return jax.tree.map(lambda g: scale.astype(g.dtype) * g, updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def clip_elementwise(max_delta: float) -> optax.GradientTransformation:
    """Clips every element: ``g_i <- min(max(g_i, -max_delta), max_delta)``.

    The per-component clipping Mikolov used for RNN language models, as discussed by Pascanu et al.
    2013; unlike the global-norm rule it can change the update's direction.
    """

    def update_fn(updates, state, params=None):
        del params
        return jax.tree.map(lambda g: jnp.clip(g, -max_delta, max_delta), updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)
