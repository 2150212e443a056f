"""Weight constraints as optax transformations: put last in a chain, they turn the update into
the step to the projected parameters, so the training step needs no extra hook.

``optax.chain(nesterov(0.05, beta=0.95), max_norm_projection(3.5))``: after
``optax.apply_updates`` every kernel column (a unit's incoming weights) has norm <= 3.5.
"""

import jax
import optax

from dl.ops.regularizers import max_norm


def max_norm_projection(limit: float) -> optax.GradientTransformation:
    """Max-norm regularization (Srivastava et al. 2014, sec. 5.1; Hinton et al. 2012): after each
    step, each hidden unit's incoming weight vector ``w`` is projected onto ``||w||_2 <= limit``.

    With ``p`` the params and ``u`` the incoming update, the output update is
    ``P(p + u) - p``, where ``P`` is `dl.ops.regularizers.max_norm` (it scales every
    ``"kernel"`` column ``kernel[..., j]`` longer than ``limit`` down to ``limit``; biases,
    embeddings and norm parameters pass through). ``apply_updates`` then gives ``P(p + u)`` up to
    one rounding of the subtraction, so a column can exceed ``limit`` by a few ulps. The paper
    uses ``limit`` (its ``c``) of 3 to 4. Stateless (``optax.EmptyState``); needs ``params``.
    """
    if not limit > 0:
        raise ValueError(f"max-norm limit must be > 0, got {limit}")

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("max_norm_projection needs params: pass them to tx.update")
        projected = max_norm(optax.apply_updates(params, updates), max_norm=limit)
        return jax.tree.map(lambda q, p: (q - p).astype(p.dtype), projected, params), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)
