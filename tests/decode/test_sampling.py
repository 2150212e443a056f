"""dl.decode.sampling against a numpy Markov chain: greedy is the argmax path, temperature
sampling draws from softmax(logits / T), and the prompt conditions the state."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl.decode.sampling import next_token, sample

LOGITS = np.log(
    np.array(
        [[0.1, 0.6, 0.2, 0.1], [0.5, 0.1, 0.3, 0.1], [0.2, 0.2, 0.2, 0.4], [0.7, 0.1, 0.1, 0.1]]
    )
)


def markov_step(params, tokens, state):
    """logits = log P[token]; the state counts the steps taken."""
    return params[tokens], state + 1


def test_greedy_follows_the_argmax_chain():
    out = sample(
        markov_step,
        jnp.asarray(LOGITS),
        jnp.array([[0], [2]]),
        jnp.zeros(2),
        jax.random.PRNGKey(0),
        num_steps=6,
        temperature=0.0,
    )
    for row, start in enumerate((0, 2)):
        expected, t = [], start
        for _ in range(6):
            t = int(np.argmax(LOGITS[t]))
            expected.append(t)
        assert out[row].tolist() == expected


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
def test_temperature_draws_follow_the_tempered_softmax(temperature):
    n = 40000
    out = sample(
        markov_step,
        jnp.asarray(LOGITS),
        jnp.full((n, 1), 1),
        jnp.zeros(n),
        jax.random.PRNGKey(1),
        num_steps=2,
        temperature=temperature,
    )
    z = LOGITS[1] / temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    freq = np.bincount(np.asarray(out[:, 0]), minlength=4) / n
    np.testing.assert_allclose(freq, p, atol=0.01)
    # The second step is drawn given the first: the joint frequency matches p1 * p2.
    pair = np.mean((np.asarray(out[:, 0]) == 0) & (np.asarray(out[:, 1]) == 2))
    z2 = LOGITS[0] / temperature
    p2 = np.exp(z2 - z2.max())
    p2 /= p2.sum()
    assert pair == pytest.approx(p[0] * p2[2], abs=0.01)


def test_prompt_is_fed_before_generation():
    def step(params, tokens, state):
        return jnp.zeros((tokens.shape[0], 4)).at[:, 3].set(1.0), state.at[:, 0].add(tokens)

    state = jnp.zeros((1, 1), jnp.int32)

    def counting(params, tokens, state):
        _logits, state = step(params, tokens, state)
        # Emit the running sum of fed tokens (mod 4) as the greedy choice.
        return jax.nn.one_hot(state[:, 0] % 4, 4) * 10.0, state

    out = sample(
        counting,
        None,
        jnp.array([[1, 2, 3]]),
        state,
        jax.random.PRNGKey(0),
        num_steps=2,
        temperature=0.0,
    )
    # Feeding 1, 2 (prompt) then 3 -> sum 6 -> token 2; then feed 2 -> sum 8 -> token 0.
    assert out.tolist() == [[2, 0]]


def test_next_token_and_bad_arguments():
    logits = jnp.array([[0.0, 3.0, 1.0]])
    assert next_token(jax.random.PRNGKey(0), logits, 0.0).tolist() == [1]
    with pytest.raises(ValueError, match="temperature"):
        sample(
            markov_step,
            jnp.asarray(LOGITS),
            jnp.array([[0]]),
            jnp.zeros(1),
            jax.random.PRNGKey(0),
            num_steps=1,
            temperature=-1.0,
        )
    with pytest.raises(ValueError, match="prompt"):
        sample(
            markov_step,
            jnp.asarray(LOGITS),
            jnp.array([0]),
            jnp.zeros(1),
            jax.random.PRNGKey(0),
            num_steps=1,
        )


def test_per_row_temperatures_mix_greedy_and_sampled_rows():
    n = 4000
    temps = jnp.where(jnp.arange(n) % 2 == 0, 0.0, 1.0)
    out = sample(
        markov_step,
        jnp.asarray(LOGITS),
        jnp.full((n, 1), 1),
        jnp.zeros(n),
        jax.random.PRNGKey(3),
        num_steps=1,
        temperature=temps,
    )
    first = np.asarray(out[:, 0])
    assert np.all(first[::2] == np.argmax(LOGITS[1]))  # greedy rows
    freq = np.bincount(first[1::2], minlength=4) / (n // 2)
    np.testing.assert_allclose(freq, np.exp(LOGITS[1]), atol=0.03)
