"""The variational autoencoder's networks (Kingma & Welling 2014; Rezende et al. 2014), with one
stochastic layer as in Burda, Grosse & Salakhutdinov (2016, IWAE), whose MNIST architecture
784-200-200-50 (tanh, two deterministic hidden layers each way) is the default here.

    encoder q(z|x):  x [*, D] -> MLP -> mean [*, L], logvar [*, L]   (diagonal Gaussian)
    decoder p(x|z):  z [*, L] -> MLP -> logits [*, D]                 (Bernoulli, binary x)
                                    or mean [*, D], logvar [*, D]     (Gaussian, real x)
    prior p(z):      N(0, I)

The reparameterization trick (K&W sec. 2.4): z = mean + exp(logvar / 2) * eps with
eps ~ N(0, I), so a sample is a differentiable function of the encoder's outputs.

Every network maps the last axis, so z may carry leading sample axes ([k, B, L] -> [k, B, D]).
The objectives that use these networks are in `dl.objectives.vae`.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from dl.ops.activations import get_activation

STD_PARAMETERIZATIONS = ("logvar", "softplus")
DECODERS = ("bernoulli", "gaussian")
SOFTPLUS_MIN_STD = 1e-4  # keeps log std finite when the softplus underflows


def _mlp(x: jax.Array, hidden: Sequence[int], activation: str, prefix: str) -> jax.Array:
    act = get_activation(activation)
    for i, width in enumerate(hidden):
        x = act(nn.Dense(width, name=f"{prefix}_{i}")(x))
    return x


def _gaussian_head(h: jax.Array, size: int, std: str, prefix: str):
    """(mean, logvar) [*, size] from features h; `std` says how the scale is parameterized:
    "logvar" a linear log-variance (K&W), "softplus" std = softplus(a) + SOFTPLUS_MIN_STD."""
    mean = nn.Dense(size, name=f"{prefix}_mean")(h)
    raw = nn.Dense(size, name=f"{prefix}_scale")(h)
    if std == "logvar":
        return mean, raw
    return mean, 2.0 * jnp.log(jax.nn.softplus(raw) + SOFTPLUS_MIN_STD)


class GaussianEncoder(nn.Module):
    """q(z|x) = N(mean(x), diag(exp(logvar(x)))). x: [*, D] -> (mean, logvar): [*, latent]."""

    hidden: Sequence[int] = (200, 200)
    latent: int = 50
    activation: str = "tanh"
    std: str = "logvar"  # a name in STD_PARAMETERIZATIONS

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        if self.std not in STD_PARAMETERIZATIONS:
            raise ValueError(f"std must be one of {STD_PARAMETERIZATIONS}, got {self.std!r}")
        h = _mlp(x, self.hidden, self.activation, "enc")
        return _gaussian_head(h, self.latent, self.std, "enc")


class BernoulliDecoder(nn.Module):
    """p(x|z) = prod_d Bernoulli(sigmoid(logits_d(z))). z: [*, L] -> logits: [*, out]."""

    hidden: Sequence[int] = (200, 200)
    out: int = 784
    activation: str = "tanh"

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        h = _mlp(z, self.hidden, self.activation, "dec")
        return nn.Dense(self.out, name="dec_logits")(h)


class GaussianDecoder(nn.Module):
    """p(x|z) = N(mean(z), diag(exp(logvar(z)))) (K&W's Frey Face decoder).
    z: [*, L] -> (mean, logvar): [*, out]."""

    hidden: Sequence[int] = (200, 200)
    out: int = 784
    activation: str = "tanh"
    std: str = "logvar"

    @nn.compact
    def __call__(self, z: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = _mlp(z, self.hidden, self.activation, "dec")
        return _gaussian_head(h, self.out, self.std, "dec")


class VAE(nn.Module):
    """Encoder and decoder in one parameter tree ({"encoder": ..., "dec": ...}).

    Methods (call through `model.apply(variables, x, method="encode")` etc.):
      encode(x [*, D]) -> (mean, logvar) [*, L]
      decode(z [*, L]) -> logits [*, D] (bernoulli) or (mean, logvar) [*, D] (gaussian)
      __call__(x, train=False) -> decode(mean(x)), the deterministic reconstruction (init uses
        it; `train` is accepted for the engine's `init_state` and ignored).

    Attributes:
      hidden: widths of the encoder's hidden layers; the decoder mirrors them (reversed).
      latent: L.
      out: D (784 for MNIST).
      decoder: a name in DECODERS.
    """

    hidden: Sequence[int] = (200, 200)
    latent: int = 50
    out: int = 784
    activation: str = "tanh"
    decoder: str = "bernoulli"
    std: str = "logvar"

    def setup(self):
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {self.decoder!r}")
        self.encoder = GaussianEncoder(self.hidden, self.latent, self.activation, self.std)
        rev = tuple(reversed(tuple(self.hidden)))
        if self.decoder == "bernoulli":
            self.dec = BernoulliDecoder(rev, self.out, self.activation)
        else:
            self.dec = GaussianDecoder(rev, self.out, self.activation, self.std)

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.encoder(x)

    def decode(self, z: jax.Array):
        return self.dec(z)

    def __call__(self, x: jax.Array, *, train: bool = False):
        del train
        mean, _ = self.encode(x)
        return self.decode(mean)


def reparameterize(mean: jax.Array, logvar: jax.Array, eps: jax.Array) -> jax.Array:
    """z = mean + exp(logvar / 2) * eps. mean, logvar: [*, L]; eps: [k, *, L] -> z [k, *, L]."""
    return mean + jnp.exp(0.5 * logvar) * eps


def sample_latent(
    rng: jax.Array, mean: jax.Array, logvar: jax.Array, num_samples: int
) -> tuple[jax.Array, jax.Array]:
    """k = num_samples reparameterized draws from q: (z, eps), both [k, *mean.shape]."""
    eps = jax.random.normal(rng, (num_samples, *mean.shape), mean.dtype)
    return reparameterize(mean, logvar, eps), eps
