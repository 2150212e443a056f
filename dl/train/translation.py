"""Train `dl.models.seq2seq.Seq2Seq` translation models and score them: perplexity, greedy and
beam-search translations, model log-probabilities, attention weights. Shared by the
translation experiments (multi30k_translation, source_reversal, beam_search, sparse_attention).

Models are always handled as a stack: parameters with a leading [n] model axis, one per seed,
trained together by one jitted step (`vmap` of `dl.objectives.seq2seq.seq2seq_loss` over the
stack, every model on the same batches, each with its own initialization and dropout stream;
`per_model` vmaps the optimizer too, so gradient clipping is per model). A single model is a
stack of one. Decoding a stack of n > 1 is the decode-time ensemble (`dl.decode.beam.
ensemble_step_fn`); ``params[i : i + 1]`` is member i alone.

Batches are `dl.data.translation.seq2seq_batch` dicts; decoding pads every source of a split to
one length, so each decoder compiles once per split shape.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dl import optim
from dl.data.translation import Split, pair_loader, seq2seq_batch, source_loader
from dl.decode.beam import beam_search, ensemble_start_fn, ensemble_step_fn
from dl.decode.sampling import sample
from dl.models.seq2seq import Seq2Seq, start_fn, step_fn
from dl.objectives.seq2seq import seq2seq_eval, seq2seq_loss, token_sums
from dl.train.loop import train
from dl.train.state import TrainState
from dl.train.step import train_step


def per_model(tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """``tx`` applied to each model of a stack independently (vmapped over axis 0)."""
    # init jitted: eager, every leaf's zeros would compile a small op of its own.
    return optax.GradientTransformation(jax.jit(jax.vmap(tx.init)), jax.vmap(tx.update))


def stack(trees: list) -> Any:
    """Stacks pytrees along a new leading model axis."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


# XLA's CPU backend spends most of a small run compiling these scanned models; optimization
# level 0 compiles about 2.5x faster and runs about 2x slower: right for smoke tests.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def _jit(fn, fast: bool, **kwargs):
    return jax.jit(fn, compiler_options=FAST_COMPILE if fast else None, **kwargs)


def init_stack(model: Seq2Seq, batch: dict, seeds, *, fast: bool = False) -> Any:
    """[n]-stacked parameters, model i initialized from PRNGKey(seeds[i]). ``fast``: compile
    with `FAST_COMPILE` (as every ``fast`` argument here)."""
    keys = jnp.stack([jax.random.PRNGKey(int(s)) for s in seeds])
    return _stack_init(model, fast)(keys, batch["src"], batch["src_lengths"], batch["tgt_in"])


@functools.cache
def _stack_init(model: Seq2Seq, fast: bool):
    # Cached per model (flax modules hash by their fields), so runs of one architecture in one
    # process share the compiled function: compiling costs far more than training at CPU sizes.
    init = lambda k, src, lengths, tgt_in: model.init(k, src, lengths, tgt_in)["params"]
    return _jit(jax.vmap(init, in_axes=(0, None, None, None)), fast)


@functools.cache
def _stack_step(model: Seq2Seq, learning_rate: float, clip_norm: float, fast: bool):
    """(tx, jitted step) for a stack, cached like `_stack_init` (the state's tx is static, so
    the same tx object is what lets the compiled step be reused)."""
    tx = per_model(optax.chain(optim.clip_by_global_norm(clip_norm), optim.adam(learning_rate)))
    step = functools.partial(train_step, loss_fn=stacked_loss(model))
    return tx, _jit(step, fast, donate_argnums=0)  # as `dl.train.step.jit_train_step`


def stacked_loss(model: Seq2Seq):
    """The engine's loss for a stack: the sum of the models' token losses (so each model's
    gradient is its own), metrics averaged over the models."""
    single = seq2seq_loss(model)

    def loss_fn(params, extra, batch, rng):
        n = jax.tree.leaves(params)[0].shape[0]
        keys = jax.vmap(lambda i: jax.random.fold_in(rng, i))(jnp.arange(n))
        losses, (metrics, _) = jax.vmap(single, in_axes=(0, None, None, 0))(
            params, extra, batch, keys
        )
        metrics = {k: jnp.mean(v) for k, v in metrics.items()}
        return jnp.sum(losses), ({**metrics, "token_nll": jnp.mean(losses)}, extra)

    return loss_fn


def perplexities(
    model: Seq2Seq, params, split: Split, batch_size: int, *, fast: bool = False
) -> np.ndarray:
    """[n] teacher-forced per-token perplexity of each model of the stack on ``split``."""
    fn = _stack_eval(model, fast)
    loader = pair_loader(split, batch_size, seed=0, boundaries=[_longest(split)], shuffle=False)
    total = np.zeros(jax.tree.leaves(params)[0].shape[0])
    count = 0.0
    for b in loader.epoch(0):
        sums = jax.device_get(fn(params, seq2seq_batch(b)))
        total += sums["loss"]
        count += float(sums["count"][0])
    return np.exp(total / count)


@functools.cache
def _stack_eval(model: Seq2Seq, fast: bool):
    single = seq2seq_eval(model)
    return _jit(jax.vmap(lambda p, b: single(p, {}, b), in_axes=(0, None)), fast)


def _longest(split: Split) -> int:
    return max(max(len(s) for s in split.src), max(len(t) for t in split.tgt))


def train_stack(
    model: Seq2Seq,
    train_split: Split,
    val_split: Split,
    *,
    seeds,
    batch_size: int,
    num_steps: int,
    learning_rate: float,
    clip_norm: float,
    workdir: str,
    boundaries=None,
    eval_every: int = 0,
    checkpoint_every: int = 0,
    data_seed: int = 0,
    resume: bool = False,
    progress: bool = True,
    desc: str = "seq2seq",
    fast: bool = False,
) -> dict[str, Any]:
    """Trains ``len(seeds)`` models on ``train_split`` with Adam and per-model global-norm
    clipping, evaluates the mean val perplexity every ``eval_every`` steps (and at the end),
    and keeps the stack of the best evaluation (`dl.train.loop.train`: metrics.jsonl and
    checkpoints in ``workdir`` every ``checkpoint_every`` steps (0: at the end only),
    ``resume`` continues from them).

    Returns:
      {"params": the best stack, "val_perplexity": [n] at the best step, "history",
       "param_count": per model, "steps", "steps_per_epoch", "train_time_s"}.
    """
    os.makedirs(workdir, exist_ok=True)
    loader = pair_loader(train_split, batch_size, seed=data_seed, boundaries=boundaries)
    params = init_stack(model, seq2seq_batch(loader.batch(0)), seeds, fast=fast)
    tx, step = _stack_step(model, float(learning_rate), float(clip_norm), fast)
    state = TrainState.create(
        apply_fn=model.apply,
        params=params,
        tx=tx,
        rng=jax.random.PRNGKey(int(seeds[0]) + 10_000),
    )

    def eval_fn(s):
        return {
            "val_perplexity": float(
                np.mean(perplexities(model, s.params, val_split, 256, fast=fast))
            )
        }

    _, history, summary = train(
        state,
        train_step=step,
        batch_fn=lambda i: seq2seq_batch(loader.batch(i)),
        num_steps=num_steps,
        workdir=workdir,
        eval_fn=eval_fn,
        eval_every=eval_every or num_steps,
        monitor="val_perplexity",
        mode="min",
        checkpoint_every=checkpoint_every or num_steps,
        resume=resume,
        progress=progress,
        desc=desc,
    )
    best = summary["best_params"]
    return {
        "params": best,
        "val_perplexity": perplexities(model, best, val_split, 256, fast=fast).tolist(),
        "history": history,
        "param_count": sum(math.prod(x.shape[1:]) for x in jax.tree.leaves(best)),
        "steps": num_steps,
        "steps_per_epoch": loader.steps_per_epoch,
        "train_time_s": summary["wall_time_s"],
    }


# ----------------------------------------------------------------------------------------------
# Decoding


def _start_step(model: Seq2Seq, n: int):
    """(start, step) for a stack of n: a stack of one decodes as that model alone (the
    parameters are sliced inside `_decoder`), a larger stack as the decode-time ensemble."""
    if n == 1:
        return start_fn(model), step_fn(model)
    return ensemble_start_fn(start_fn(model)), ensemble_step_fn(step_fn(model))


def translate(
    model: Seq2Seq,
    params,
    split: Split,
    *,
    beam_size: int = 0,
    alpha: float = 0.0,
    max_len: int,
    batch_size: int = 128,
    pad_to: int = 0,
    bos_id: int = 2,
    eos_id: int = 3,
    fast: bool = False,
) -> list[np.ndarray]:
    """Token ids (up to and including the first ``<eos>``, if any) of the stack's translation of every
    sentence of ``split``, in order: greedy when ``beam_size`` is 0, else beam search of that
    width with length normalization ((5 + |Y|) / 6) ** alpha. Sources pad to ``max(pad_to,
    longest source)`` (one compile for splits of one padded length)."""
    n = jax.tree.leaves(params)[0].shape[0]
    decode = _decoder(model, n, beam_size, max_len, bos_id, eos_id, fast)
    if beam_size:  # alpha is traced: one compile serves every alpha
        decode = functools.partial(decode, alpha=jnp.float32(alpha))
    loader = source_loader(
        split, batch_size, boundaries=[max(pad_to, *(len(s) for s in split.src))]
    )
    out: list[np.ndarray | None] = [None] * len(split)
    for b in loader.epoch(0):
        ids = np.asarray(decode(params, b["inputs"], b["lengths"]))
        for row, i in enumerate(b["index"]):
            if b["mask"][row]:
                seq = ids[row]
                stop = np.flatnonzero(seq == eos_id)
                out[i] = seq[: stop[0] + 1] if len(stop) else seq
    return out


@functools.cache
def _decoder(model: Seq2Seq, n: int, beam_size: int, max_len: int, bos_id, eos_id, fast: bool):
    start, step = _start_step(model, n)
    members = (lambda p: jax.tree.map(lambda x: x[0], p)) if n == 1 else (lambda p: p)

    def greedy(params, src, lengths, alpha=None):
        params = members(params)
        state = start(params, src, lengths)
        bos = jnp.full((src.shape[0], 1), bos_id, jnp.int32)
        key = jax.random.PRNGKey(0)
        return sample(step, params, bos, state, key, num_steps=max_len, temperature=0.0)

    def beam(params, src, lengths, alpha):
        params = members(params)
        state = start(params, src, lengths)
        bos = jnp.full((src.shape[0],), bos_id, jnp.int32)
        result = beam_search(
            step,
            params,
            state,
            bos,
            eos=eos_id,
            beam_size=beam_size,
            max_len=max_len,
            alpha=alpha,
        )
        return result.tokens[:, 0]

    if beam_size == 0:
        return _jit(greedy, fast)
    return _jit(beam, fast)


def log_probs(
    model: Seq2Seq, params, split: Split, hyps: list[np.ndarray], *, bos_id=2, fast=False
):
    """[len(split)] log p(y_1 .. y_n | x) of each hypothesis (`translate`'s ids, ``<eos>``
    included where it ended) under one model (``params`` a stack of one), by teacher forcing:
    independent of the decoder's own bookkeeping."""
    fake = Split(
        split.src,
        [np.concatenate([[bos_id], h]).astype(np.int32) for h in hyps],
        split.src_text,
        split.ref_text,
        split.index,
    )
    fn = _sentence_scores(model, fast)
    loader = pair_loader(fake, 128, seed=0, boundaries=[_longest(fake)], shuffle=False)
    out = np.zeros(len(split))
    one = jax.tree.map(lambda x: x[0], params)
    for b in loader.epoch(0):
        scores = np.asarray(fn(one, seq2seq_batch(b)))
        for row, i in enumerate(b["index"]):
            if b["mask"][row]:
                out[i] = scores[row]
    return out


@functools.cache
def _sentence_scores(model: Seq2Seq, fast: bool):
    def fn(params, batch):
        logits = model.apply(
            {"params": params}, batch["src"], batch["src_lengths"], batch["tgt_in"]
        )
        sums = jax.vmap(lambda lg, t, m: token_sums(lg[None], t[None], m[None])["loss"])(
            logits, batch["tgt_out"], batch["tgt_mask"]
        )
        return -sums

    return _jit(fn, fast)


def attention_weights(
    model: Seq2Seq, params, src, src_lengths, tgt_in, *, fast: bool = False
) -> np.ndarray:
    """[B, T, S] attention weights of model 0 of the stack under teacher forcing (the one leaf
    the model sows into "intermediates")."""
    return np.asarray(_attention_fn(model, fast)(params, src, src_lengths, tgt_in))


@functools.cache
def _attention_fn(model: Seq2Seq, fast: bool):
    def fn(params, src, src_lengths, tgt_in):
        one = jax.tree.map(lambda x: x[0], params)
        _, inter = model.apply({"params": one}, src, src_lengths, tgt_in, mutable=["intermediates"])
        (weights,) = jax.tree.leaves(inter["intermediates"])
        return weights

    return _jit(fn, fast)


def attention_support(model: Seq2Seq, params, split: Split, *, fast: bool = False) -> float:
    """Mean over the real target tokens of ``split`` (teacher forcing on the references) of the
    fraction of real source positions with nonzero attention weight."""
    loader = pair_loader(split, 128, seed=0, boundaries=[_longest(split)], shuffle=False)
    nonzero = total = 0.0
    for raw in loader.epoch(0):
        b = seq2seq_batch(raw)
        w = attention_weights(model, params, b["src"], b["src_lengths"], b["tgt_in"], fast=fast)
        real_src = np.arange(w.shape[2])[None, :] < b["src_lengths"][:, None]  # [B, S]
        frac = ((w > 0) & real_src[:, None, :]).sum(-1) / b["src_lengths"][:, None]  # [B, T]
        nonzero += float((frac * b["tgt_mask"]).sum())
        total += float(b["tgt_mask"].sum())
    return nonzero / total


def slice_stack(params, i: int):
    """Model i of a stack, as a stack of one (sliced on the host: an eager slice would compile
    one small op per leaf shape)."""
    return jax.tree.map(lambda x: jnp.asarray(np.asarray(x)[i : i + 1]), params)


def first_models(params, k: int):
    """The stack's first k models, as a stack of k (sliced on the host, as `slice_stack`)."""
    return jax.tree.map(lambda x: jnp.asarray(np.asarray(x)[:k]), params)
