"""Batched beam search in one `lax.while_loop`, and decode-time ensembles, over any step function

    step_fn(params, tokens [B], state) -> (logits [B, V], state)

(e.g. `dl.models.seq2seq.step_fn(model)`; every leaf of `state` has the batch on axis 0).

    result = beam_search(step_fn, params, state, start_tokens, eos=EOS, beam_size=5,
                         max_len=50, alpha=0.6)
    result.tokens[:, 0]          # [B, max_len]: each row's best hypothesis, `pad` after EOS

Per batch row the search keeps K live hypotheses (no EOS yet) and a buffer of K finished ones.
Step i (i = 0 .. max_len - 1) extends every live hypothesis by every token: K * V candidates
with log P(y_1..y_{i+1}) = live log-prob + log_softmax(logits). Then
* live <- the K best candidates whose token is not EOS;
* finished <- the K best of (buffer, the EOS candidates that rank among the K best of ALL
  K * V candidates), by the normalized score s(Y) = log P(Y) / lp(|Y|), lp(n) = ((5 + n) / 6)
  ** alpha (Wu et al. 2016, eq. 14, without their coverage penalty), |Y| counting the EOS.
  The buffer keeps hypotheses that end at the same step together (up to K of them survive),
  and live beams keep searching past them. Finalizing an EOS only when it ranks in the top K
  (Fairseq's rule) makes beam 1 exactly greedy decoding when alpha = 0.
* early exit: a live hypothesis can only lose log-probability, and lp grows with length, so
  none can ever score above (best live log-prob) / lp(max_len) (alpha >= 0). When that bound
  is below the worst score in a full buffer for every row, no later step can change the
  result, and the loop stops (`early_exit=False` runs all max_len steps: the same output).
* fallback: a row that finished nothing by max_len returns its live beams, scored
  log P / lp(max_len).

The first step expands only beam 0 (the others start at log-prob -inf), so no hypothesis is
duplicated. Slots that never held a hypothesis (fewer than K possible) score -inf. The whole
search is one jitted function of (params, state, start_tokens, alpha); the step function, EOS,
K, max_len and pad are static.

Ensembles (`ensemble_step_fn`): N models whose params are stacked on a leading axis run as one
`vmap`; the ensemble's next-token distribution is the mean of the N log-probabilities (the
normalized geometric mean; Sutskever et al. 2014 ensemble this way at decode time), or with
`average="probability"` the mean of the probabilities. Their states are stacked on axis 1
(batch first, as beam search needs): build them with `ensemble_start_fn`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

StepFn = Callable[[Any, jax.Array, Any], tuple[jax.Array, Any]]
AVERAGES = ("log_prob", "probability")


class BeamResult(NamedTuple):
    tokens: jax.Array  # [B, K, max_len] int32, best first; `pad` after each EOS
    lengths: jax.Array  # [B, K] int32, EOS included (max_len for a fallback live beam)
    scores: jax.Array  # [B, K] float32, log P / lp(length); -inf for empty slots
    log_probs: jax.Array  # [B, K] float32, log P(Y) under the model
    steps: jax.Array  # [] int32, decoder steps run (< max_len after an early exit)


def length_penalty(length: jax.Array, alpha) -> jax.Array:
    """lp(|Y|) = ((5 + |Y|) / 6) ** alpha (Wu et al. 2016, eq. 14)."""
    return ((5.0 + length.astype(jnp.float32)) / 6.0) ** alpha


def _gather_beams(tree: Any, index: jax.Array, batch: int, beams: int) -> Any:
    """Reorders leaves [B * K_old, ...] (batch-major) by index [B, K] into [B * K, ...]."""

    def gather(x):
        x = x.reshape((batch, -1) + x.shape[1:])
        idx = index.reshape(index.shape + (1,) * (x.ndim - 2))
        return jnp.take_along_axis(x, idx, axis=1).reshape((batch * beams,) + x.shape[2:])

    return jax.tree.map(gather, tree)


def _take(x: jax.Array, index: jax.Array) -> jax.Array:
    """x [B, N, ...], index [B, K] -> [B, K, ...]."""
    return jnp.take_along_axis(x, index.reshape(index.shape + (1,) * (x.ndim - 2)), axis=1)


def beam_search(
    step_fn: StepFn,
    params: Any,
    state: Any,
    start_tokens: jax.Array,
    *,
    eos: int,
    beam_size: int,
    max_len: int,
    alpha: float | jax.Array = 0.6,
    pad: int = 0,
    early_exit: bool = True,
) -> BeamResult:
    """Beam search from ``state`` (batch B) and ``start_tokens`` [B] (e.g. BOS); see the module
    docstring. alpha >= 0 (0: no length normalization; traced, so a sweep over alpha compiles
    once). Jitted, with step_fn, eos, beam_size, max_len, pad and early_exit static (pass the
    same step_fn object to reuse the compiled search). Returns a `BeamResult`, best first."""
    if beam_size < 1 or max_len < 1:
        raise ValueError(f"need beam_size, max_len >= 1, got {beam_size}, {max_len}")
    if isinstance(alpha, int | float) and alpha < 0:
        raise ValueError(f"alpha must be >= 0 (the early-exit bound needs it), got {alpha}")
    return _beam_search(
        step_fn,
        params,
        state,
        jnp.asarray(start_tokens, jnp.int32),
        jnp.asarray(alpha, jnp.float32),
        eos=eos,
        beam_size=beam_size,
        max_len=max_len,
        pad=pad,
        early_exit=early_exit,
    )


@functools.partial(
    jax.jit, static_argnames=("step_fn", "eos", "beam_size", "max_len", "pad", "early_exit")
)
def _beam_search(
    step_fn, params, state, start_tokens, alpha, *, eos, beam_size, max_len, pad, early_exit
):
    k = beam_size
    b = start_tokens.shape[0]
    neg = jnp.asarray(-jnp.inf, jnp.float32)
    state = jax.tree.map(lambda x: jnp.repeat(x, k, axis=0), state)  # [B * K, ...]
    max_lp = length_penalty(jnp.asarray(max_len), alpha)
    init = {
        "i": jnp.zeros((), jnp.int32),
        "state": state,
        "last": jnp.repeat(start_tokens, k),  # [B * K]
        "live_tokens": jnp.full((b, k, max_len), pad, jnp.int32),
        "live_logp": jnp.where(jnp.arange(k) == 0, 0.0, neg)[None].repeat(b, 0),
        "fin_tokens": jnp.full((b, k, max_len), pad, jnp.int32),
        "fin_scores": jnp.full((b, k), neg),
        "fin_logp": jnp.full((b, k), neg),
        "fin_len": jnp.zeros((b, k), jnp.int32),
    }

    def done(c):
        best_live = jnp.max(c["live_logp"], axis=1)  # [B]
        worst_fin = jnp.min(c["fin_scores"], axis=1)  # -inf while the buffer is not full
        return jnp.all((best_live / max_lp < worst_fin) | (best_live == neg))

    def cond(c):
        running = c["i"] < max_len
        return running & ~done(c) if early_exit else running

    def body(c):
        i = c["i"]
        logits, state = step_fn(params, c["last"], c["state"])
        logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
        v = logp.shape[-1]
        cand = (c["live_logp"][..., None] + logp.reshape(b, k, v)).reshape(b, k * v)
        token = jnp.arange(k * v, dtype=jnp.int32) % v  # candidate -> its token
        is_eos = token == eos
        # Live: the K best non-EOS candidates.
        live_logp, live_idx = lax.top_k(jnp.where(is_eos, neg, cand), k)
        origin = live_idx // v
        live_tokens = _take(c["live_tokens"], origin).at[:, :, i].set(live_idx % v)
        # Finished: EOS candidates within the top K of all candidates, merged into the buffer.
        # The K-th best of all candidates is the K-th best of (the K best non-EOS, the K EOS
        # candidates), which hold all K best: a top_k over [B, 2K]. A second top_k over
        # [B, K * V] whose indices go unused compiles on XLA:CPU to a full sort of [B, K * V]
        # (not its TopK call): 10x the decoder step; it made the search 9x slower.
        eos_logp = cand.reshape(b, k, v)[:, :, eos]  # [B, K], one per live beam
        kth = lax.top_k(jnp.concatenate([live_logp, eos_logp], axis=1), k)[0][:, -1:]
        eos_logp = jnp.where(eos_logp >= kth, eos_logp, neg)
        length = i + 1
        eos_scores = eos_logp / length_penalty(length, alpha)
        eos_tokens = c["live_tokens"].at[:, :, i].set(eos)
        # The buffer comes first: on ties top_k keeps the lower index, the older hypothesis.
        pool_scores = jnp.concatenate([c["fin_scores"], eos_scores], axis=1)
        fin_scores, fin_idx = lax.top_k(pool_scores, k)
        pool = lambda old, new: _take(jnp.concatenate([old, new], axis=1), fin_idx)
        return {
            "i": i + 1,
            "state": _gather_beams(state, origin, b, k),
            "last": (live_idx % v).reshape(b * k),
            "live_tokens": live_tokens,
            "live_logp": live_logp,
            "fin_tokens": pool(c["fin_tokens"], eos_tokens),
            "fin_scores": fin_scores,
            "fin_logp": pool(c["fin_logp"], eos_logp),
            "fin_len": pool(c["fin_len"], jnp.full((b, k), length, jnp.int32)),
        }

    c = lax.while_loop(cond, body, init)
    any_fin = c["fin_scores"][:, 0] > neg  # [B]

    def choose(fin, live):
        return jnp.where(any_fin.reshape((b,) + (1,) * (fin.ndim - 1)), fin, live)

    return BeamResult(
        tokens=choose(c["fin_tokens"], c["live_tokens"]),
        lengths=choose(c["fin_len"], jnp.full((b, k), max_len, jnp.int32)),
        scores=choose(c["fin_scores"], c["live_logp"] / max_lp),
        log_probs=choose(c["fin_logp"], c["live_logp"]),
        steps=c["i"],
    )


def ensemble_step_fn(step_fn: StepFn, average: str = "log_prob") -> StepFn:
    """The step function of an ensemble: `(stacked_params, tokens [B], states) -> (logits [B,
    V], states)`, params stacked on axis 0 (N models), each state leaf [B, N, ...].

    The returned logits are the mean of the N models' log-softmaxes ("log_prob") or the log of
    the mean of their softmaxes ("probability"); both are log-probabilities already, so a
    decoder's log_softmax leaves them unchanged. One model: its own log-probabilities."""
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {AVERAGES}, got {average!r}")
    vstep = jax.vmap(step_fn, in_axes=(0, None, 1), out_axes=(0, 1))

    def step(stacked_params, tokens, states):
        logits, states = vstep(stacked_params, tokens, states)  # [N, B, V]
        logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
        if average == "log_prob":
            mixed = jax.nn.log_softmax(jnp.mean(logp, axis=0), axis=-1)
        else:
            mixed = jax.nn.logsumexp(logp, axis=0) - jnp.log(jnp.float32(logp.shape[0]))
        return mixed, states

    return step


def ensemble_start_fn(start_fn: Callable[..., Any]) -> Callable[..., Any]:
    """`start_fn(params, *inputs) -> state` (batch on axis 0) -> the ensemble's
    `(stacked_params, *inputs) -> states` with every leaf [B, N, ...]."""

    def start(stacked_params, *inputs):
        return jax.vmap(start_fn, in_axes=(0,) + (None,) * len(inputs), out_axes=1)(
            stacked_params, *inputs
        )

    return start
