"""Beam-5 decoding speed, sentences per second: dl's jitted batched beam search
(`dl.decode.beam.beam_search`, one `lax.while_loop`) against a straightforward PyTorch beam
search of the same model (`benchmarks.seq2seq_torch`, weights copied) and the same algorithm,
batch by batch, in one process.

Run:    python -m benchmarks.beam_decode [--sentences N] [--repeats R] [--json PATH]
Expect: goal jax_over_torch_eager >= 2.0; see BENCHMARKS.md ("beam_decode").

The PyTorch search (`torch_beam_search`) is `dl.decode.beam`'s algorithm line by line, in
eager PyTorch under `torch.inference_mode()`: per step, log_softmax of the K live beams' next
tokens, the K best non-EOS candidates stay live, EOS candidates within the top K of all
candidates join a K-slot buffer of finished hypotheses ranked by log P / ((5 + |Y|) / 6) **
alpha, early exit when no live beam can beat the worst finished one, fallback to the live beams.
Both decode the same synthetic sources (random tokens, length `src_len`) with the same
randomly initialized attentive GRU model whose output bias favours EOS a little, so that
hypotheses end at varied lengths. Outputs are compared before timing ("same_outputs": the
fraction of sentences whose best hypothesis is identical; float reassociation can flip a near
tie).
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import _cli, matmul_peak, seq2seq_torch
from benchmarks.mlp_step import cpu_snapshot, machine, others_busy
from dl.decode.beam import beam_search
from dl.models.seq2seq import Seq2Seq, start_fn, step_fn

BOS, EOS = 2, 3
VOCAB, EMBED, HIDDEN = 1000, 64, 128
BEAM, MAX_LEN, ALPHA = 5, 20, 0.6
SRC_LEN, BATCH = 15, 64


def make_sources(seed: int, n: int, *, vocab: int, src_len: int = SRC_LEN) -> np.ndarray:
    return np.random.default_rng(seed).integers(4, vocab, (n, src_len)).astype(np.int32)


def init_params(seed: int, *, vocab: int, embed: int, hidden: int, eos_bias: float = 3.0):
    model = Seq2Seq(vocab, vocab, embed=embed, hidden=hidden, cell="gru", attention="additive")
    src = np.full((1, SRC_LEN), 4, np.int32)
    init = jax.jit(lambda k: model.init(k, src, np.array([SRC_LEN], np.int32), src[:, :1]))
    params = jax.device_get(init(jax.random.PRNGKey(seed))["params"])
    params = jax.tree.map(np.array, params)
    params["decoder"]["out"]["bias"][EOS] += eos_bias  # hypotheses end at varied lengths
    return model, params


def jax_decoder(model: Seq2Seq, *, beam: int, max_len: int, alpha: float):
    start, step = start_fn(model), step_fn(model)

    @jax.jit
    def decode(params, src):
        lengths = jnp.full((src.shape[0],), src.shape[1], jnp.int32)
        bos = jnp.full((src.shape[0],), BOS, jnp.int32)
        out = beam_search(
            step,
            params,
            start(params, src, lengths),
            bos,
            eos=EOS,
            beam_size=beam,
            max_len=max_len,
            alpha=alpha,
        )
        return out.tokens[:, 0]

    return decode


def torch_beam_search(model, src, *, beam: int, max_len: int, alpha: float, pad: int = 0):
    """[B, max_len] best hypotheses (`pad` after EOS), `dl.decode.beam`'s algorithm."""
    import torch

    b, k = src.shape[0], beam
    neg = float("-inf")
    lp = lambda n: ((5.0 + n) / 6.0) ** alpha
    keys, projected, (h, feed) = model.encode(src)
    rep = lambda x: x.repeat_interleave(k, dim=0)
    keys, projected, state = rep(keys), rep(projected), (rep(h), rep(feed))
    last = torch.full((b * k,), BOS, dtype=torch.long)
    live_tokens = torch.full((b, k, max_len), pad, dtype=torch.long)
    live_logp = torch.full((b, k), neg)
    live_logp[:, 0] = 0.0
    fin_tokens = torch.full((b, k, max_len), pad, dtype=torch.long)
    fin_scores = torch.full((b, k), neg)
    max_lp = lp(max_len)
    rows = torch.arange(b)[:, None]
    for i in range(max_len):
        best_live = live_logp.max(dim=1).values
        worst_fin = fin_scores.min(dim=1).values
        if bool(((best_live / max_lp < worst_fin) | (best_live == neg)).all()):
            break
        logits, state = model.step(last, keys, projected, state)
        logp = torch.log_softmax(logits.float(), dim=-1)
        v = logp.shape[-1]
        cand = (live_logp[..., None] + logp.view(b, k, v)).view(b, k * v)
        is_eos = (torch.arange(k * v) % v) == EOS
        new_logp, idx = torch.topk(cand.masked_fill(is_eos, neg), k, dim=1)
        origin, token = idx // v, idx % v
        kth = torch.topk(cand, k, dim=1).values[:, -1:]
        eos_logp = cand.view(b, k, v)[:, :, EOS]
        eos_logp = torch.where(eos_logp >= kth, eos_logp, torch.full_like(eos_logp, neg))
        eos_tokens = live_tokens.clone()
        eos_tokens[:, :, i] = EOS
        pool_scores = torch.cat([fin_scores, eos_logp / lp(i + 1)], dim=1)
        fin_scores, fin_idx = torch.topk(pool_scores, k, dim=1)
        fin_tokens = torch.cat([fin_tokens, eos_tokens], dim=1)[rows, fin_idx]
        live_tokens = live_tokens[rows, origin]
        live_tokens[:, :, i] = token
        live_logp = new_logp
        flat = (origin + rows * k).view(-1)
        keys, projected = keys[flat], projected[flat]
        state = (state[0][flat], state[1][flat])
        last = token.view(-1)
    any_fin = fin_scores[:, 0] > neg
    best = torch.where(any_fin[:, None], fin_tokens[:, 0], live_tokens[:, 0])
    return best


def benchmark(
    *,
    sentences: int,
    repeats: int,
    seed: int = 0,
    vocab: int = VOCAB,
    embed: int = EMBED,
    hidden: int = HIDDEN,
    beam: int = BEAM,
    max_len: int = MAX_LEN,
) -> dict:
    import torch

    info = machine()
    torch.set_num_threads(matmul_peak.xla_cpu_threads())
    model, params = init_params(seed, vocab=vocab, embed=embed, hidden=hidden)
    src = make_sources(seed + 1, sentences, vocab=vocab)
    batches = [src[i : i + BATCH] for i in range(0, sentences, BATCH)]
    decode = jax_decoder(model, beam=beam, max_len=max_len, alpha=ALPHA)
    dev_params = jax.device_put(params)
    tm = seq2seq_torch.build(params).eval()

    def run_jax():
        return [np.asarray(decode(dev_params, x)) for x in batches]

    def run_torch():
        with torch.inference_mode():
            return [
                torch_beam_search(
                    tm, torch.from_numpy(x).long(), beam=beam, max_len=max_len, alpha=ALPHA
                ).numpy()
                for x in batches
            ]

    ours, theirs = np.concatenate(run_jax()), np.concatenate(run_torch())  # warm-up, compile
    same = float(np.mean([np.array_equal(a, c) for a, c in zip(ours, theirs)]))
    ended = float(np.mean((ours == EOS).any(axis=1)))
    seconds = {"jax": [], "torch eager": []}
    before = cpu_snapshot()
    for _ in range(repeats):
        for name, fn in (("jax", run_jax), ("torch eager", run_torch)):
            t0 = time.perf_counter()
            fn()
            seconds[name].append(time.perf_counter() - t0)
    contention = others_busy(before, cpu_snapshot())
    results = {
        name: {"seconds": s, "sentences_per_s": sentences / float(np.median(s))}
        for name, s in seconds.items()
    }
    ratio = results["jax"]["sentences_per_s"] / results["torch eager"]["sentences_per_s"]
    return {
        "machine": {**info, "loadavg_1min_end": os.getloadavg()[0], "others_busy": contention},
        "config": {
            "vocab": vocab,
            "embed": embed,
            "hidden": hidden,
            "beam": beam,
            "max_len": max_len,
            "alpha": ALPHA,
            "src_len": SRC_LEN,
            "batch": BATCH,
            "sentences": sentences,
            "repeats": repeats,
            "seed": seed,
        },
        "results": results,
        "ratios": {"jax_over_torch_eager": ratio},
        "same_outputs": same,
        "ended_fraction": ended,
        "notes": {},
    }


def format_result(res: dict) -> str:
    m, c = res["machine"], res["config"]
    lines = [
        (
            f"{m['cpu']}, {m['xla_cpu_threads']} threads, load {m['loadavg_1min_start']:.1f} -> "
            f"{m['loadavg_1min_end']:.1f}; other processes kept {m['others_busy']:.0%} busy"
        ),
        (
            f"beam {c['beam']}, alpha {c['alpha']}, max_len {c['max_len']}, {c['sentences']} "
            f"sentences of {c['src_len']} tokens in batches of {c['batch']}; vocab {c['vocab']}, "
            f"hidden {c['hidden']}"
        ),
        (
            f"same best hypothesis on {res['same_outputs']:.1%} of sentences; "
            f"{res['ended_fraction']:.0%} ended with EOS"
        ),
    ]
    for name, r in res["results"].items():
        lines.append(f"{name:<14}{r['sentences_per_s']:>10.1f} sentences/s")
    lines.append(f"jax_over_torch_eager {res['ratios']['jax_over_torch_eager']:.2f}  goal >= 2")
    lines += _cli.contention_warning(
        m["others_busy"], line="WARNING: the figures are contended; rerun when idle"
    )
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=256, help="sentences per repeat")
    parser.add_argument("--repeats", type=int, default=3, help="repeats; the median is reported")
    parser.add_argument("--json", default="", help="also write the result to this path")
    parser.add_argument("--vocab", type=int, default=VOCAB, help="(smaller only for tests)")
    parser.add_argument("--hidden", type=int, default=HIDDEN, help="(smaller only for tests)")
    parser.add_argument("--max-len", type=int, default=MAX_LEN, help="longest output")
    args = parser.parse_args(argv)
    res = benchmark(
        sentences=args.sentences,
        repeats=args.repeats,
        vocab=args.vocab,
        embed=min(EMBED, args.hidden),
        hidden=args.hidden,
        max_len=args.max_len,
    )
    return _cli.finish(res, format_result(res), args.json)


if __name__ == "__main__":
    main()
