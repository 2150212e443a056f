"""Attention over a padded memory: one query per row, S keys, masked padding.

    attn = Attention(kind="additive", normalize="softmax", features=A)
    context, weights = attn(query, keys, mask)            # [B, Dq], [B, S, Dk], [B, S] bool
    # context [B, Dk] = sum_i weights[:, i] * keys[:, i];  weights [B, S], rows sum to 1

Score functions z_i (s the query, h_i the i-th key):

* "additive" (Bahdanau, Cho & Bengio 2015, eq. 6 and app. A.1.2; Luong's "concat"):
  z_i = v^T tanh(W h_i + U s + b), with W [Dk, A], U [Dq, A], b [A], v [A]; A = `features`.
  W h_i + b does not depend on the query: `project_keys(keys)` computes it once per sequence and `__call__(..., projected=...)` reuses it at every decoder step.
* "dot" (Luong, Pham & Manning 2015, eq. 8): z_i = s^T h_i; needs Dq == Dk; no parameters.
* "general" (Luong et al. eq. 8): z_i = s^T W_a h_i, W_a [Dk, Dq]; `features` must be Dq.
  `project_keys` precomputes h_i W_a (shape [B, S, Dq]), so a step is one [S, Dq] x [Dq] product.

Normalization of z over the unmasked positions: "softmax", or "sparsemax" (Martins & Astudillo
2016, with `dl.ops.sparsemax.sparsemax`), which gives exact zeros on low-scoring positions too.
Padded positions (mask False) get weight exactly 0 under both: their scores are replaced by a
very negative finite value (exp underflows to 0; sparsemax puts them below its threshold), and
the weights are then selected to 0 there, so even a non-finite score cannot leak. A row with no
real position gets all-zero weights and a zero context.

Each call records its weights with ``self.sow("intermediates", "attention", weights)``; read
them with ``model.apply(..., mutable=["intermediates"])`` (inside `dl.models.seq2seq`, whose
decoder is an `nn.scan`, they come back stacked over decoder steps, see there).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from dl.ops.sparsemax import sparsemax

KINDS = ("additive", "dot", "general")
NORMALIZERS = ("softmax", "sparsemax")


def masked_normalize(scores: jax.Array, mask: jax.Array | None, normalize: str) -> jax.Array:
    """scores [..., S] -> weights [..., S] summing to 1 over the True entries of mask [..., S]
    (all of them when mask is None), exactly 0 elsewhere; all 0 on a row with no True entry."""
    if normalize not in NORMALIZERS:
        raise ValueError(f"normalize must be one of {NORMALIZERS}, got {normalize!r}")
    if mask is None:
        mask = jnp.ones(scores.shape, bool)
    mask = mask.astype(bool)
    # finfo.min / 2: exp(very negative - max) is exactly 0, and z - max(z) cannot overflow.
    low = jnp.asarray(jnp.finfo(scores.dtype).min / 2, scores.dtype)
    z = jnp.where(mask, scores, low)
    weights = jax.nn.softmax(z, axis=-1) if normalize == "softmax" else sparsemax(z, axis=-1)
    return jnp.where(mask, weights, jnp.zeros((), weights.dtype))


class Attention(nn.Module):
    """(query [B, Dq], keys [B, S, Dk], mask [B, S] bool | None, projected) -> (context [B, Dk],
    weights [B, S]); see the module docstring for the score functions.

    Attributes:
      kind: "additive", "dot" or "general".
      normalize: "softmax" or "sparsemax".
      features: additive: A, the width of the scoring layer; general: Dq (both required);
        dot: unused. Parameters: additive key/{kernel,bias} [Dk, A], query/kernel [Dq, A],
        v/kernel [A, 1]; general key/kernel [Dk, Dq].
    """

    kind: str = "additive"
    normalize: str = "softmax"
    features: int | None = None

    def setup(self):
        if self.kind not in KINDS:
            raise ValueError(f"attention kind must be one of {KINDS}, got {self.kind!r}")
        if self.normalize not in NORMALIZERS:
            raise ValueError(f"normalize must be one of {NORMALIZERS}, got {self.normalize!r}")
        if self.kind != "dot" and self.features is None:
            raise ValueError(f"{self.kind} attention needs `features` (see Attention)")
        if self.kind == "additive":
            self.key = nn.Dense(self.features, name="key")
            self.query = nn.Dense(self.features, use_bias=False, name="query")
            self.v = nn.Dense(1, use_bias=False, name="v")
        elif self.kind == "general":
            self.key = nn.Dense(self.features, use_bias=False, name="key")

    def project_keys(self, keys: jax.Array) -> jax.Array | None:
        """The query-independent part of the scores, once per sequence: additive W h_i + b
        [B, S, A]; general h_i W_a [B, S, Dq]; dot None (nothing to precompute)."""
        return None if self.kind == "dot" else self.key(keys)

    def scores(self, query, keys, projected=None) -> jax.Array:
        """Unnormalized z [B, S] (no mask applied)."""
        if self.kind == "dot":
            if query.shape[-1] != keys.shape[-1]:
                raise ValueError(
                    f"dot attention needs query size == key size, got {query.shape[-1]} and "
                    f"{keys.shape[-1]}"
                )
            return jnp.einsum("bd,bsd->bs", query, keys)
        if projected is None:
            projected = self.project_keys(keys)
        if self.kind == "general":
            return jnp.einsum("bd,bsd->bs", query, projected)
        hidden = jnp.tanh(projected + self.query(query)[:, None, :])
        return self.v(hidden)[..., 0]

    def __call__(self, query, keys, mask=None, projected=None):
        """projected: `project_keys(keys)` from an earlier call (same parameters), or None to
        compute it here."""
        weights = masked_normalize(self.scores(query, keys, projected), mask, self.normalize)
        self.sow("intermediates", "attention", weights)
        context = jnp.einsum("bs,bsd->bd", weights, keys)
        return context, weights
