"""Per-layer signals of a Flax model: what each Dense layer receives, emits, and is sent back.

Glorot & Bengio (2010) study, layer by layer, the activations ``h^{i-1}`` entering layer i, the
pre-activations ``s^i = h^{i-1} W^i + b^i`` it emits, and the back-propagated gradients
``dCost / ds^i`` (their Figures 6-7 and eq. 2-7). `dense_probe` records all three for every
``nn.Dense`` in any Flax model, without the model having to expose them: it intercepts each Dense
call (``flax.linen.intercept_methods``), adds a zero "perturbation" ``eps^i`` to its output, and
differentiates the cost with respect to the perturbations, since ``dCost/d eps^i = dCost/ds^i``
at ``eps = 0``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


def _layer_name(module: nn.Module) -> str:
    return "/".join(str(p) for p in module.path) or module.name or "dense"


def _run(
    model: nn.Module, variables: Any, x: jax.Array, perturbations: dict | None, apply_kwargs: dict
) -> tuple[jax.Array, dict[str, tuple[jax.Array, jax.Array]]]:
    """Applies the model, adding ``perturbations[name]`` to each Dense output; returns the model
    output and {name: (input, output)} for every Dense call."""
    record: dict[str, tuple[jax.Array, jax.Array]] = {}

    def interceptor(next_fun, args, kwargs, context):
        if not (isinstance(context.module, nn.Dense) and context.method_name == "__call__"):
            return next_fun(*args, **kwargs)
        name = _layer_name(context.module)
        if name in record:
            raise ValueError(
                f"Dense layer {name!r} is called twice; dense_probe needs one call each"
            )
        out = next_fun(*args, **kwargs)
        if perturbations is not None:
            out = out + perturbations[name]
        record[name] = (args[0], out)
        return out

    with nn.intercept_methods(interceptor):
        y = model.apply(variables, x, **apply_kwargs)
    return y, record


def dense_probe(
    model: nn.Module,
    variables: Any,
    x: jax.Array,
    cost_fn: Callable[[jax.Array], jax.Array],
    **apply_kwargs,
) -> tuple[jax.Array, dict[str, dict[str, jax.Array]]]:
    """Inputs, pre-activations and back-propagated gradients of every Dense layer.

    Args:
      model, variables: a Flax module and its variables ({"params": ...}); every ``nn.Dense`` in
        it must be called exactly once per application.
      x: the model input, e.g. [batch, in].
      cost_fn: model output -> scalar cost (e.g. the mean cross-entropy against fixed labels).
      **apply_kwargs: passed to ``model.apply`` (e.g. ``train=False``).

    Returns:
      (cost, layers) with ``layers[name]`` (name: the Dense layer's module path, e.g. "dense_0",
      in call order) holding
        "input":  [..., in]  what the layer received (``h^{i-1}``; the previous layer's activation),
        "output": [..., out] its affine output (``s^i``, the pre-activation),
        "grad":   [..., out] ``dCost / ds^i``, the back-propagated gradient at the layer.
      Summing "grad" over the batch axes gives the cost's gradient with respect to the bias.
    """
    shapes = jax.eval_shape(lambda v, x: _run(model, v, x, None, apply_kwargs)[1], variables, x)
    zeros = {name: jnp.zeros(out.shape, out.dtype) for name, (_, out) in shapes.items()}

    def cost(perturbations):
        y, record = _run(model, variables, x, perturbations, apply_kwargs)
        return cost_fn(y), record

    (value, record), grads = jax.value_and_grad(cost, has_aux=True)(zeros)
    layers = {
        name: {"input": inp, "output": out, "grad": grads[name]}
        for name, (inp, out) in record.items()
    }
    return value, layers
