"""Attention models for classifying an image from a few small glimpses.

* `RAM`: the recurrent attention model of Mnih, Heess, Graves & Kavukcuoglu 2014 ("Recurrent
  models of visual attention", sec. 3; hard attention in Xu et al. 2015's terms). For t = 1..T:

      l_t ~ N(tanh(W_l stop_gradient(h_{t-1}) + b_l), sigma^2 I)    location network (policy)
      b_t = W_b stop_gradient(h_{t-1}) + c_b                          learned baseline
      g_t = ReLU(W_g [ReLU(W_x rho(x, l_t)); ReLU(W_m l_t)])          glimpse network
      h_t = core(h_{t-1}, g_t)                                        `dl.nn` Elman / LSTM cell
      logits = W_a h_T                                                action (classifier) network

  rho is `dl.ops.glimpse.retina`; h_0 = 0, so l_1's mean tanh(b_l) is a learned start. The
  sampled location is clipped to [-1, 1] and stop-gradient'ed before the glimpse: it reaches
  the loss only through log pi(l_t | h_{t-1}) (REINFORCE, `dl.objectives.hard_attention`), and
  the stop-gradients on h keep that reward signal (and the baseline's regression) out of the
  core and glimpse networks, which learn by backprop of the classification loss only.
  `policy="random"` draws l_t ~ U[-1, 1]^2 instead (the paper's "random glimpses" control;
  in evaluation without a "glimpse" rng from fixed keys, so the test error is deterministic).
  With `sample=False` (default: not training) the learned policy looks at the mean location.
* `SoftAttention`: Xu et al. 2015's deterministic soft attention on the same retina: the glimpse
  network reads a fixed G x G grid of candidate locations once, and at each step the core
  attends to a softmax-weighted sum of the G^2 glimpse features (scores w^T tanh(W f_i + U h)),
  end to end differentiable.

Both map x [B, H, W, C] to a dict with "logits" [B, classes]; RAM adds "locations" [B, T, 2],
"log_probs" [B, T] and "baselines" [B, T]; SoftAttention adds "weights" [B, T, G^2].
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from dl.nn.recurrent import LSTM, Elman
from dl.ops.glimpse import retina, retina_batch

POLICIES = ("learned", "random")
CORES = ("elman", "lstm")


def _core(kind: str, features: int) -> nn.Module:
    if kind == "elman":
        return Elman(features, activation="relu", name="core")  # the paper's rectifier core
    if kind == "lstm":
        return LSTM(features, variant="NP", name="core")
    raise ValueError(f"core must be one of {', '.join(CORES)}, got {kind!r}")


def gaussian_log_prob(x: jax.Array, mean: jax.Array, std: float) -> jax.Array:
    """log N(x | mean, std^2 I) summed over the last axis."""
    z = (x - mean) / std
    return jnp.sum(-0.5 * z**2 - math.log(std) - 0.5 * math.log(2 * math.pi), axis=-1)


class GlimpseNet(nn.Module):
    """(images [B, H, W, C], locs [B, 2]) -> g [B, features] (module docstring); `code` takes
    ready retina patches [..., scales, base, base, C] and locs [..., 2] instead."""

    base: int = 8
    scales: int = 3
    what_features: int = 128  # h_g: the retina's code
    where_features: int = 128  # h_l: the location's code
    features: int = 256

    def setup(self):
        self.what = nn.Dense(self.what_features)
        self.where = nn.Dense(self.where_features)
        self.what_out = nn.Dense(self.features)
        self.where_out = nn.Dense(self.features, use_bias=False)

    def code(self, patches: jax.Array, locs: jax.Array) -> jax.Array:
        what = nn.relu(self.what(patches.reshape(*locs.shape[:-1], -1)))
        where = nn.relu(self.where(locs))
        return nn.relu(self.what_out(what) + self.where_out(where))

    def __call__(self, images: jax.Array, locs: jax.Array) -> jax.Array:
        return self.code(retina_batch(images, locs, base=self.base, scales=self.scales), locs)


class RAM(nn.Module):
    """The recurrent attention model (module docstring). Sampling draws from the "glimpse" rng."""

    glimpses: int = 6
    base: int = 8
    scales: int = 3
    what_features: int = 128
    where_features: int = 128
    glimpse_features: int = 256
    core_features: int = 256
    core: str = "elman"
    loc_std: float = 0.17  # the policy's fixed standard deviation, in units of the half-image
    policy: str = "learned"
    classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False, sample: bool | None = None) -> dict:
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {self.policy!r}")
        sample = train if sample is None else sample
        batch = x.shape[0]
        glimpse = GlimpseNet(
            self.base,
            self.scales,
            self.what_features,
            self.where_features,
            self.glimpse_features,
            name="glimpse",
        )
        cell = _core(self.core, self.core_features)
        loc_net = nn.Dense(2, name="location")
        baseline_net = nn.Dense(1, name="baseline")
        carry = cell.initialize_carry((batch,), x.dtype)
        h = jnp.zeros((batch, self.core_features), x.dtype)
        locs, log_probs, baselines = [], [], []
        fixed = jax.random.PRNGKey(0)
        for _ in range(self.glimpses):
            mean = jnp.tanh(loc_net(jax.lax.stop_gradient(h)))
            if self.policy == "random":
                # evaluation without a "glimpse" rng reads the fixed key 0: deterministic
                key = self.make_rng("glimpse") if train or self.has_rng("glimpse") else fixed
                fixed = jax.random.fold_in(fixed, 1)
                loc = jax.random.uniform(key, mean.shape, x.dtype, -1.0, 1.0)
            elif sample:
                noise = jax.random.normal(self.make_rng("glimpse"), mean.shape, x.dtype)
                loc = mean + self.loc_std * noise
            else:
                loc = mean
            loc = jax.lax.stop_gradient(loc)
            log_probs.append(gaussian_log_prob(loc, mean, self.loc_std))
            baselines.append(baseline_net(jax.lax.stop_gradient(h))[:, 0])
            loc = jnp.clip(loc, -1.0, 1.0)
            locs.append(loc)
            carry, h = cell(carry, glimpse(x, loc))
        logits = nn.Dense(self.classes, name="classifier")(h)
        return {
            "logits": logits,
            "locations": jnp.stack(locs, axis=1),
            "log_probs": jnp.stack(log_probs, axis=1),
            "baselines": jnp.stack(baselines, axis=1),
        }


def candidate_grid(grid: int) -> jax.Array:
    """[grid^2, 2] locations: the centres of a grid x grid tiling of [-1, 1]^2, row-major."""
    c = (2.0 * jnp.arange(grid, dtype=jnp.float32) + 1.0) / grid - 1.0
    rows, cols = jnp.meshgrid(c, c, indexing="ij")
    return jnp.stack([rows.ravel(), cols.ravel()], axis=-1)


class SoftAttention(nn.Module):
    """Soft attention over a grid of glimpses (module docstring)."""

    steps: int = 6
    grid: int = 7
    base: int = 8
    scales: int = 3
    what_features: int = 128
    where_features: int = 128
    glimpse_features: int = 256
    core_features: int = 256
    attention_features: int = 128
    core: str = "elman"
    classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> dict:
        batch = x.shape[0]
        cand = candidate_grid(self.grid)  # [K, 2]
        k = cand.shape[0]
        glimpse = GlimpseNet(
            self.base,
            self.scales,
            self.what_features,
            self.where_features,
            self.glimpse_features,
            name="glimpse",
        )
        look = functools.partial(retina, base=self.base, scales=self.scales)
        patches = jax.vmap(lambda img: jax.vmap(lambda loc: look(img, loc))(cand))(x)
        feats = glimpse.code(patches, jnp.broadcast_to(cand, (batch, k, 2)))  # [B, K, F]
        keys = nn.Dense(self.attention_features, name="att_keys")(feats)  # W f_i, [B, K, A]
        query = nn.Dense(self.attention_features, use_bias=False, name="att_query")
        score = nn.Dense(1, use_bias=False, name="att_score")
        cell = _core(self.core, self.core_features)
        carry = cell.initialize_carry((batch,), x.dtype)
        h = jnp.zeros((batch, self.core_features), x.dtype)
        weights = []
        for _ in range(self.steps):
            e = score(jnp.tanh(keys + query(h)[:, None, :]))[..., 0]  # [B, K]
            alpha = jax.nn.softmax(e, axis=-1)
            carry, h = cell(carry, jnp.einsum("bk,bkf->bf", alpha, feats))
            weights.append(alpha)
        return {
            "logits": nn.Dense(self.classes, name="classifier")(h),
            "weights": jnp.stack(weights, axis=1),
        }
