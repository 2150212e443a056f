"""Long-range synthetic sequence problems, drawn on the fly from a JAX key; jittable.

* `adding`: the adding problem (Hochreiter & Schmidhuber 1997, experiment 4, in the form of
  Le, Jaitly & Hinton 2015, sec. 4.1).
* `copy_memory`: the copy-memory problem (Hochreiter & Schmidhuber 1997, experiment 2, in the
  form of Arjovsky, Shah & Bengio 2016, sec. 4.1).
* `transduction`: reverse, sort or copy random token strings of varied length, as padded
  sequence-to-sequence batches (the attention-vs-length experiment).

Each function is pure in `key` (equal keys give equal arrays, on any backend) and takes the
sizes as static Python ints, so `jax.jit(partial(adding, batch=..., length=...))` compiles once
and a training loop can draw step t's batch from `fold_in(key, t)` inside `lax.scan` (fresh
samples every step, and resumable: the batch depends only on the step).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

ADDING_BASELINE_MSE = 1.0 / 6.0  # predict 1 always: E[(U1 + U2 - 1)^2] = Var(U1 + U2) = 2/12


def adding(key: jax.Array, *, batch: int, length: int) -> tuple[jax.Array, jax.Array]:
    """The adding problem: sum the two marked numbers of a length-`length` sequence.

    Channel 0 holds U[0, 1) values, channel 1 a 0/1 marker with exactly two ones: one at a
    uniform position in the first half [0, length // 2) and one in the second half
    [length // 2, length) (Le et al. 2015). The target is the sum of the two marked values;
    predicting the constant 1 scores MSE 1/6 (`ADDING_BASELINE_MSE`).

    Args:
      key: a JAX PRNG key.
      batch: number of sequences.
      length: T >= 2.

    Returns:
      x [batch, length, 2] float32 (values, markers), y [batch] float32.
    """
    if length < 2 or batch < 1:
        raise ValueError(f"need length >= 2 and batch >= 1, got length={length}, batch={batch}")
    k_values, k_first, k_second = jax.random.split(key, 3)
    half = length // 2
    values = jax.random.uniform(k_values, (batch, length), jnp.float32)
    first = jax.random.randint(k_first, (batch,), 0, half)
    second = jax.random.randint(k_second, (batch,), half, length)
    steps = jnp.arange(length)
    markers = (steps == first[:, None]) | (steps == second[:, None])
    markers = markers.astype(jnp.float32)
    y = jnp.sum(values * markers, axis=1)
    return jnp.stack([values, markers], axis=-1), y


def copy_memory(
    key: jax.Array, *, batch: int, delay: int, n_symbols: int = 8, n_copy: int = 10
) -> tuple[jax.Array, jax.Array]:
    """The copy-memory problem of Arjovsky et al. 2016: recall `n_copy` symbols after `delay`.

    Token ids: 0 is the blank, 1..n_symbols the symbols, n_symbols + 1 the delimiter (inputs
    only). With T = `delay`, L = `n_copy`, a sequence has T + 2L steps:

        input : s_1 .. s_L, 0 x (T - 1), delimiter, 0 x L
        target: 0 x (T + L),                        s_1 .. s_L

    so the delimiter at step T + L - 1 (0-based) says "output now", and the symbols are due at
    steps T + L .. T + 2L - 1. Targets take n_symbols + 1 classes (blank and symbols). The
    memoryless baseline (blanks, then uniform over the symbols) has cross-entropy
    `copy_memory_baseline(T)` = L log(n_symbols) / (T + 2L) nats per step.

    Args:
      key: a JAX PRNG key.
      batch: number of sequences.
      delay: T >= 1.
      n_symbols: number of symbol categories (8 in the paper).
      n_copy: L, the number of symbols to remember (10 in the paper).

    Returns:
      inputs [batch, T + 2L] int32 in [0, n_symbols + 1], targets [batch, T + 2L] int32 in
      [0, n_symbols].
    """
    if delay < 1 or batch < 1 or n_symbols < 1 or n_copy < 1:
        raise ValueError(
            "need delay, batch, n_symbols, n_copy >= 1, got "
            f"{delay}, {batch}, {n_symbols}, {n_copy}"
        )
    symbols = jax.random.randint(key, (batch, n_copy), 1, n_symbols + 1, jnp.int32)
    gap = jnp.zeros((batch, delay - 1), jnp.int32)
    delimiter = jnp.full((batch, 1), n_symbols + 1, jnp.int32)
    tail = jnp.zeros((batch, n_copy), jnp.int32)
    inputs = jnp.concatenate([symbols, gap, delimiter, tail], axis=1)
    targets = jnp.concatenate([jnp.zeros((batch, delay + n_copy), jnp.int32), symbols], axis=1)
    return inputs, targets


def copy_memory_baseline(delay: int, *, n_symbols: int = 8, n_copy: int = 10) -> float:
    """Cross-entropy (nats per step) of the memoryless strategy: L log(n_symbols) / (T + 2L)."""
    return n_copy * math.log(n_symbols) / (delay + 2 * n_copy)


# Token ids of `transduction`: symbols are SYMBOL0 .. SYMBOL0 + n_symbols - 1.
PAD, BOS, EOS, SYMBOL0 = 0, 1, 2, 3
TRANSDUCTIONS = ("reverse", "sort", "copy")


def transduction(
    key: jax.Array,
    *,
    batch: int,
    min_len: int,
    max_len: int,
    n_symbols: int = 10,
    task: str = "reverse",
) -> dict[str, jax.Array]:
    """Random strings of uniform length in [min_len, max_len] and their reversal / sort / copy.

    Symbols are uniform over ids SYMBOL0 .. SYMBOL0 + n_symbols - 1 (PAD = 0, BOS = 1, EOS = 2).
    The target of a length-n string x is y = reversed(x), sorted(x) (ascending) or x, then EOS.

    Returns a `dl.objectives.seq2seq` batch: "src" [batch, max_len] (PAD after the string),
    "src_lengths" [batch], "tgt_in" [batch, max_len + 1] (BOS, y_1 .. y_n, PAD...), "tgt_out"
    [batch, max_len + 1] (y_1 .. y_n, EOS, PAD...), "tgt_mask" [batch, max_len + 1] float32
    (1 on the n + 1 real target tokens); int32 otherwise.
    """
    if not 1 <= min_len <= max_len or batch < 1 or n_symbols < 1:
        raise ValueError(
            f"need 1 <= min_len <= max_len, batch >= 1, n_symbols >= 1; got {min_len}, "
            f"{max_len}, {batch}, {n_symbols}"
        )
    if task not in TRANSDUCTIONS:
        raise ValueError(f"task must be one of {TRANSDUCTIONS}, got {task!r}")
    k_len, k_sym = jax.random.split(key)
    lengths = jax.random.randint(k_len, (batch,), min_len, max_len + 1, jnp.int32)
    steps = jnp.arange(max_len, dtype=jnp.int32)[None, :]
    real = steps < lengths[:, None]
    symbols = jax.random.randint(k_sym, (batch, max_len), SYMBOL0, SYMBOL0 + n_symbols, jnp.int32)
    src = jnp.where(real, symbols, PAD)
    if task == "reverse":
        index = jnp.where(real, lengths[:, None] - 1 - steps, steps)
        y = jnp.take_along_axis(src, index, axis=1)
    elif task == "sort":
        big = jnp.int32(SYMBOL0 + n_symbols)  # padding sorts last, then is put back to PAD
        y = jnp.sort(jnp.where(real, src, big), axis=1)
        y = jnp.where(real, y, PAD)
    else:
        y = src
    pad_col = jnp.full((batch, 1), PAD, jnp.int32)
    tgt_in = jnp.concatenate([jnp.full((batch, 1), BOS, jnp.int32), y], axis=1)
    tgt_out = jnp.concatenate([y, pad_col], axis=1)
    tgt_out = tgt_out.at[jnp.arange(batch), lengths].set(EOS)
    tgt_mask = (jnp.arange(max_len + 1)[None, :] <= lengths[:, None]).astype(jnp.float32)
    return {
        "src": src,
        "src_lengths": lengths,
        "tgt_in": tgt_in,
        "tgt_out": tgt_out,
        "tgt_mask": tgt_mask,
    }
