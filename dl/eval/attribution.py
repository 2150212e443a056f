"""What a trained network responds to: inputs optimized for a unit, and saliency of real inputs.

* `gradient_ascent`: activation maximization (Erhan, Bengio, Courville & Vincent 2009; class
  models of Simonyan, Vedaldi & Zisserman 2014, eq. 1): projected gradient ascent on the input of
  ``objective(x) - l2 / 2 ||x||^2``, with jitter (a random circular shift of the image at each
  step, the gradient taken there and shifted back; Mordvintsev et al.'s DeepDream), which
  averages the objective over small translations and suppresses pixel-grid noise. All inputs
  and settings are static except `x0` and `key`, so it `vmap`s over objectives (one per class).
* `saliency`: |d score_y / d x| (Simonyan et al. 2014, sec. 3), the maximum over channels.
* `deletion_test`: the probability of the true class after zeroing the most salient fraction of
  pixels, against zeroing a random fraction of the same size (a check that the map points at
  evidence the model uses; Samek et al. 2017's pixel-flipping, one step of it).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax


def gradient_ascent(
    objective: Callable[[jax.Array], jax.Array],
    x0: jax.Array,
    *,
    steps: int,
    learning_rate: float,
    l2: float = 0.0,
    jitter: int = 0,
    key: jax.Array | None = None,
    bounds: tuple[float, float] | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Maximizes ``objective(x) - l2 / 2 ||x||^2`` by `steps` steps of gradient ascent.

    x <- clip(x + lr * (grad objective(roll(x, s)) rolled back by -s  -  l2 x), bounds), with
    s uniform in [-jitter, jitter]^2 over the first two axes each step (s = 0 when jitter = 0).

    Args:
      objective: x [H, W, ...] -> scalar (e.g. one class's logit of a model on x[None]).
      x0: [H, W, ...] starting input.
      steps, learning_rate: plain (not normalized) ascent steps; converges on the quadratic
        l2 term for learning_rate * l2 < 2.
      l2: weight of the L2 penalty (Simonyan et al.'s lambda).
      jitter: largest shift in pixels (0 = off; then `key` is unused).
      key: PRNG key for the shifts (required when jitter > 0).
      bounds: (lo, hi) box the input is projected onto after each step (None = unbounded).
    Returns:
      (x [H, W, ...], trace [steps]: the objective at x before each step, unshifted).
    """
    if jitter and key is None:
        raise ValueError("gradient_ascent: jitter > 0 needs a PRNG key")
    key = jax.random.PRNGKey(0) if key is None else key
    value_and_grad = jax.value_and_grad(objective)

    def step(x, k):
        if jitter:
            s = jax.random.randint(k, (2,), -jitter, jitter + 1)
            shifted = jnp.roll(x, (s[0], s[1]), axis=(0, 1))
            value, g = value_and_grad(shifted)
            g = jnp.roll(g, (-s[0], -s[1]), axis=(0, 1))
            value = objective(x)
        else:
            value, g = value_and_grad(x)
        x = x + learning_rate * (g - l2 * x)
        if bounds is not None:
            x = jnp.clip(x, bounds[0], bounds[1])
        return x, value

    return lax.scan(step, x0, jax.random.split(key, steps))


def saliency(
    score_fn: Callable[[jax.Array], jax.Array], x: jax.Array, labels: jax.Array
) -> jax.Array:
    """Simonyan et al.'s image-specific saliency: max over channels of |d score[b, y_b] / d x_b|.

    Args:
      score_fn: x [B, H, W, C] -> scores [B, K] (logits), each row a function of its own
        example only (no batch statistics: evaluation mode).
      x: [B, H, W, C] inputs.
      labels: [B] int classes whose score is differentiated (usually the true ones).
    Returns:
      [B, H, W] non-negative maps.
    """

    def total(x):
        return jnp.sum(jnp.take_along_axis(score_fn(x), labels[:, None], axis=1))

    grads = jax.grad(total)(x)
    return jnp.max(jnp.abs(grads), axis=-1)


def _zero_top(x: jax.Array, scores: jax.Array, k: int, fill: float) -> jax.Array:
    """x [B, H, W, C] with the k pixels of highest scores [B, H, W] set to `fill` (all channels)."""
    b, h, w = scores.shape
    _, idx = lax.top_k(scores.reshape(b, h * w), k)
    keep = jnp.ones((b, h * w), x.dtype).at[jnp.arange(b)[:, None], idx].set(0.0)
    keep = keep.reshape(b, h, w, 1)
    return x * keep + (1.0 - keep) * jnp.asarray(fill, x.dtype)


def deletion_test(
    prob_fn: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    labels: jax.Array,
    saliency_maps: jax.Array,
    *,
    fraction: float,
    key: jax.Array,
    fill: float = 0.0,
) -> dict[str, jax.Array]:
    """True-class probabilities before and after deleting the most salient or random pixels.

    Args:
      prob_fn: x [B, H, W, C] -> class probabilities [B, K].
      x: [B, H, W, C]; labels: [B] int; saliency_maps: [B, H, W].
      fraction: share of the H * W pixels deleted, k = round(fraction * H * W) >= 1.
      key: PRNG key for the random pixels (one uniform draw per pixel, top k taken).
      fill: the value deleted pixels get (0 = MNIST background).
    Returns:
      {"original", "salient", "random": [B] probabilities of labels, and "salient_wins": [B]
      bool, whether the salient deletion lowered it strictly more than the random one}.
    """
    b, h, w = saliency_maps.shape
    k = max(1, round(fraction * h * w))
    noise = jax.random.uniform(key, (b, h, w))

    def true_prob(inputs):
        return jnp.take_along_axis(prob_fn(inputs), labels[:, None], axis=1)[:, 0]

    original = true_prob(x)
    salient = true_prob(_zero_top(x, saliency_maps, k, fill))
    rand = true_prob(_zero_top(x, noise, k, fill))
    return {
        "original": original,
        "salient": salient,
        "random": rand,
        "salient_wins": (original - salient) > (original - rand),
    }
