"""dl.decode.beam: exact outputs on deterministic stub models worked out by hand, exhaustive
search (numpy enumeration) on a tiny random model, beam 1 == greedy, early exit changes nothing,
and an ensemble of one model is that model."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl.decode.beam import (
    AVERAGES,
    beam_search,
    ensemble_start_fn,
    ensemble_step_fn,
    length_penalty,
)
from dl.decode.sampling import greedy_decode

V, EOS = 12, 5


def chain_step(params, tokens, state):
    """next = token + 1 with certainty (every other token has log-prob -inf)."""
    logits = jnp.where(jnp.arange(V)[None, :] == tokens[:, None] + 1, 0.0, -jnp.inf)
    return logits, state + 1


def branch_step(params, tokens, state):
    """next = t + 1 with probability 1 - t / 10, t + 2 with t / 10, nothing else."""
    t = tokens.astype(jnp.float32)[:, None]
    v = jnp.arange(V)[None, :]
    probs = jnp.where(v == tokens[:, None] + 1, 1.0 - 0.1 * t, 0.0)
    probs = jnp.where(v == tokens[:, None] + 2, 0.1 * t, probs)
    return jnp.log(probs), state


def test_stub_models_give_the_hand_worked_outputs():
    start, state = jnp.array([1, 2]), jnp.zeros((2,), jnp.int32)
    r = beam_search(chain_step, None, state, start, eos=EOS, beam_size=3, max_len=10)
    np.testing.assert_array_equal(r.tokens[0, 0, :5], [2, 3, 4, 5, 0])
    np.testing.assert_array_equal(r.tokens[1, 0, :4], [3, 4, 5, 0])
    np.testing.assert_array_equal(r.lengths[:, 0], [4, 3])
    np.testing.assert_array_equal(r.log_probs[:, 0], [0.0, 0.0])
    assert np.all(np.isneginf(r.scores[:, 1:]))  # only one hypothesis exists
    assert int(r.steps) == 4  # nothing live after the last EOS: early exit
    # From 1 to EOS = 5 by steps of +1 / +2: P(2345) = .9 .8 .7 .6, P(235) = .9 .8 .3,
    # P(245) = .9 .2 .6, P(345) = .1 .7 .6, P(35) = .1 .3. Beam 2 (alpha 0) finalizes 235 at
    # step 3 (EOS ranks 2nd of the 4 candidates), drops 245 (3rd), and 2345 at step 4.
    one = jnp.array([1])
    z = jnp.zeros((1,))
    r = beam_search(branch_step, None, z, one, eos=EOS, beam_size=2, max_len=4, alpha=0.0)
    np.testing.assert_array_equal(r.tokens[0], [[2, 3, 4, 5], [2, 3, 5, 0]])
    np.testing.assert_array_equal(r.lengths[0], [4, 3])
    np.testing.assert_allclose(np.exp(r.log_probs[0]), [0.9 * 0.8 * 0.7 * 0.6, 0.216], rtol=1e-5)
    # max_len 3: the finished 235 beats the unfinished live 234 (greedy's output).
    r = beam_search(branch_step, None, z, one, eos=EOS, beam_size=2, max_len=3, alpha=0.0)
    np.testing.assert_array_equal(r.tokens[0, 0], [2, 3, 5])
    tokens, lengths, _ = greedy_decode(branch_step, None, z, one, eos=EOS, max_len=3)
    np.testing.assert_array_equal(tokens[0], [2, 3, 4])
    assert int(lengths[0]) == 3
    # Nothing can finish within max_len: the fallback returns the live beams.
    r = beam_search(chain_step, None, state, start, eos=EOS, beam_size=2, max_len=2)
    np.testing.assert_array_equal(r.tokens[:, 0], [[2, 3], [3, 4]])
    np.testing.assert_array_equal(r.lengths[:, 0], [2, 2])
    np.testing.assert_array_equal(r.scores[:, 0], [0.0, 0.0])


def random_rnn(v, h, seed, eos_bias=0.0):
    rng = np.random.default_rng(seed)
    params = {
        "E": rng.normal(size=(v, h)).astype(np.float32),
        "W": (rng.normal(size=(h, h)) / np.sqrt(h)).astype(np.float32),
        "U": (2.0 * rng.normal(size=(h, v))).astype(np.float32),
        "b": np.eye(v, dtype=np.float32)[0] * eos_bias,  # EOS = 0
    }
    return jax.tree.map(jnp.asarray, params)


def rnn_step(params, tokens, h):
    h = jnp.tanh(params["E"][tokens] + h @ params["W"])
    return h @ params["U"] + params["b"], h


def timed_rnn_step(params, tokens, state):
    """`rnn_step` whose EOS logit grows by b_EOS at every step."""
    h, t = state
    logits, h = rnn_step(params, tokens, h)
    return logits + params["b"] * t[:, None], (h, t + 1.0)


def np_rnn_logp(params, start, prefix, h0):
    """log P(prefix | start) under `rnn_step`, in float64."""
    p = {k: np.asarray(a, np.float64) for k, a in params.items()}
    h, tok, total = np.asarray(h0, np.float64), start, 0.0
    for y in prefix:
        h = np.tanh(p["E"][tok] + h @ p["W"])
        z = h @ p["U"] + p["b"]
        total += z[y] - z.max() - np.log(np.exp(z - z.max()).sum())
        tok = y
    return total


def test_wide_beam_equals_exhaustive_search():
    # V = 3 (EOS = 0), max_len 4: at most 2^3 live prefixes and 8 * 3 candidates per step, so
    # K = 24 never prunes anything: the buffer must hold the exhaustive ranking of all
    # 1 + 2 + 4 + 8 = 15 finished sequences.
    v, h, max_len, alpha, k = 3, 4, 4, 0.6, 24
    params = random_rnn(v, h, seed=0)
    h0 = np.random.default_rng(1).normal(size=(2, h)).astype(np.float32)
    start = np.array([1, 2])
    r = beam_search(
        rnn_step, params, jnp.asarray(h0), start, eos=0, beam_size=k, max_len=max_len, alpha=alpha
    )
    for row in range(2):
        found = []
        for n in range(1, max_len + 1):
            for body in itertools.product((1, 2), repeat=n - 1):
                seq = (*body, 0)
                lp = np_rnn_logp(params, start[row], seq, h0[row])
                found.append((lp / ((5 + n) / 6) ** alpha, seq))
        found.sort(key=lambda x: -x[0])
        valid = np.isfinite(np.asarray(r.scores[row]))
        assert valid.sum() == len(found) == 15
        np.testing.assert_allclose(r.scores[row][valid], [s for s, _ in found], atol=1e-5)
        for j, (_, seq) in enumerate(found):
            np.testing.assert_array_equal(r.tokens[row, j, : len(seq)], seq)
            assert int(r.lengths[row, j]) == len(seq)


def test_beam_one_is_greedy_and_early_exit_changes_nothing():
    params = random_rnn(6, 5, seed=2, eos_bias=1.0)
    h0 = jnp.asarray(np.random.default_rng(3).normal(size=(8, 5)).astype(np.float32))
    start = jnp.arange(8) % 5 + 1
    r = beam_search(rnn_step, params, h0, start, eos=0, beam_size=1, max_len=8, alpha=0.0)
    tokens, lengths, logp = greedy_decode(rnn_step, params, h0, start, eos=0, max_len=8)
    np.testing.assert_array_equal(r.tokens[:, 0], tokens)
    np.testing.assert_array_equal(r.lengths[:, 0], lengths)
    np.testing.assert_allclose(r.log_probs[:, 0], logp, atol=1e-5)
    assert 0 < int(jnp.sum(lengths < 8)) < 8  # some rows finish, some fall back to live
    # EOS likelier at every step, so that the buffers fill and the exit can trigger.
    params = random_rnn(6, 5, seed=2, eos_bias=1.0)
    kw = {"eos": 0, "beam_size": 3, "max_len": 12, "alpha": 0.6}
    state = (h0, jnp.zeros((8,), jnp.float32))
    early = beam_search(timed_rnn_step, params, state, start, **kw)
    full = beam_search(timed_rnn_step, params, state, start, early_exit=False, **kw)
    assert int(early.steps) < int(full.steps) == 12  # the exit did trigger
    for a, b in zip(early[:4], full[:4], strict=True):
        np.testing.assert_array_equal(a, b)


def test_ensembles():
    params = [random_rnn(5, 4, seed=s) for s in (4, 5)]
    h0 = jnp.asarray(np.random.default_rng(6).normal(size=(3, 4)).astype(np.float32))
    start = jnp.array([1, 2, 3])
    stack = lambda ps: jax.tree.map(lambda *a: jnp.stack(a), *ps)
    states = ensemble_start_fn(lambda p, h: h)(stack(params), h0)  # [B, N, H]
    assert states.shape == (3, 2, 4)
    kw = {"eos": 0, "beam_size": 3, "max_len": 6}
    single = beam_search(rnn_step, params[0], h0, start, **kw)
    one = beam_search(ensemble_step_fn(rnn_step), stack(params[:1]), h0[:, None], start, **kw)
    np.testing.assert_array_equal(one.tokens, single.tokens)
    np.testing.assert_allclose(one.scores, single.scores, atol=1e-5)
    # Two models, one step: the mean of their log-probabilities (or of their probabilities).
    tokens = jnp.array([1, 2, 4])

    @jax.jit
    def one_step(stacked, states):
        ours = {a: ensemble_step_fn(rnn_step, a)(stacked, tokens, states) for a in AVERAGES}
        own = [jax.nn.log_softmax(rnn_step(p, tokens, h0)[0]) for p in params]
        return ours, own, rnn_step(params[1], tokens, h0)[1]

    ours, (lp0, lp1), h1 = one_step(stack(params), states)
    mean_prob = np.log((np.exp(lp0) + np.exp(lp1)) / 2)
    mean_log = np.asarray((lp0 + lp1) / 2)
    mean_log = mean_log - np.log(np.exp(mean_log).sum(-1, keepdims=True))
    np.testing.assert_allclose(ours["log_prob"][0], mean_log, atol=1e-5)
    np.testing.assert_allclose(ours["probability"][0], mean_prob, atol=1e-5)
    np.testing.assert_allclose(ours["log_prob"][1][:, 1], h1, atol=1e-6)  # states [B, N, H]
    with pytest.raises(ValueError, match="average must be"):
        ensemble_step_fn(rnn_step, "max")


def test_length_penalty_is_wu_et_al():
    np.testing.assert_allclose(
        length_penalty(jnp.arange(1, 4), 0.6), ((5 + np.arange(1, 4)) / 6) ** 0.6
    )
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        beam_search(
            chain_step, None, jnp.zeros(1), jnp.ones(1), eos=5, beam_size=2, max_len=3, alpha=-1.0
        )
