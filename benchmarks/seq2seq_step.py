"""One Adam train step of the attentive GRU encoder-decoder (`dl.models.seq2seq.Seq2Seq`,
bidirectional GRU encoder, GRU decoder with Bahdanau attention and input feeding), batch 64,
source and target length 20, timed through dl's engine (`seq2seq_loss`, `jit_train_step`)
side by side with the same model, weights and batch in PyTorch (`benchmarks.seq2seq_torch`:
`torch.nn.GRU` encoder, `torch.nn.GRUCell` decoder loop), eager and `torch.compile`.

Run:    python -m benchmarks.seq2seq_step [--steps N] [--repeats R] [--json PATH]
                                          [--no-torch-compile]
Expect: goal jax_over_torch_eager >= 1.0; see BENCHMARKS.md ("seq2seq_step").

Method: as `benchmarks.mlp_step`: JAX's initial parameters are copied into PyTorch, both sides
train with Adam (lr 1e-3; `dl.optim.adam` and `torch.optim.Adam` are the same algorithm) on
the same batch, the first WARMUP_STEPS losses (mean cross-entropy per target token) are
compared before timing, repeats are interleaved, and the median repeat is reported.

FLOPs per step (model convention, 6 x forward multiply-adds): per target token the softmax
H x V, the decoder GRU (E + H + H) x 3H, attention S x (A + 2 M) (query projection H x A
included), combine (M + H) x H; per source token the encoder 2 x (E + M/2) x 3M/2 and the key
projection M x A. Embeddings, gates and the optimizer are not counted.
"""

from __future__ import annotations

import functools
import os

import jax
import numpy as np

from benchmarks import _cli, matmul_peak, seq2seq_torch
from benchmarks.mlp_step import (
    cpu_snapshot,
    machine,
    others_busy,
    summarize,
    time_runners,
)
from dl import optim
from dl.models.seq2seq import Seq2Seq
from dl.objectives.seq2seq import seq2seq_loss
from dl.train.state import TrainState
from dl.train.step import jit_train_step

BATCH, SRC_LEN, TGT_LEN = 64, 20, 20
VOCAB, EMBED, HIDDEN = 4000, 128, 256
LEARNING_RATE = 1e-3


def make_batch(seed: int, *, vocab: int, batch=BATCH, src_len=SRC_LEN, tgt_len=TGT_LEN):
    rng = np.random.default_rng(seed)
    src = rng.integers(4, vocab, (batch, src_len)).astype(np.int32)
    tgt = rng.integers(4, vocab, (batch, tgt_len + 1)).astype(np.int32)
    return {
        "src": src,
        "src_lengths": np.full(batch, src_len, np.int32),
        "tgt_in": tgt[:, :-1],
        "tgt_out": tgt[:, 1:],
        "tgt_mask": np.ones((batch, tgt_len), np.float32),
    }


def step_flops(*, vocab: int, embed: int, hidden: int, batch=BATCH, s=SRC_LEN, t=TGT_LEN):
    m, a = hidden, hidden  # memory width (2 x hidden / 2) and attention width
    per_tgt = hidden * vocab + (embed + 2 * hidden) * 3 * hidden + s * (a + 2 * m) + hidden * a
    per_tgt += (m + hidden) * hidden
    per_src = 2 * (embed + m // 2) * 3 * (m // 2) + m * a
    model = 6 * batch * (t * per_tgt + s * per_src)
    return {"model": model, "matmul_executed": model, "elementwise": 0}


def model_of(vocab: int, embed: int, hidden: int) -> Seq2Seq:
    return Seq2Seq(vocab, vocab, embed=embed, hidden=hidden, cell="gru", attention="additive")


def jax_runner(batch: dict, *, seed: int, vocab: int, embed: int, hidden: int):
    """dl's engine: Seq2Seq params, `seq2seq_loss`, `dl.optim.adam`, jitted donated step."""
    model = model_of(vocab, embed, hidden)
    init = jax.jit(lambda k: model.init(k, batch["src"], batch["src_lengths"], batch["tgt_in"]))
    params = init(jax.random.PRNGKey(seed))["params"]
    params0 = jax.tree.map(np.array, jax.device_get(params))
    state = TrainState.create(
        apply_fn=model.apply, params=params, tx=optim.adam(LEARNING_RATE), rng=jax.random.PRNGKey(0)
    )
    step = jit_train_step(seq2seq_loss(model))
    dev_batch = jax.device_put(batch)
    return _cli.jax_train_runner(step, state, dev_batch), params0


def torch_runner(batch: dict, params0: dict, *, device: str, compile_model: bool = False):
    """torch.optim.Adam on the twin model; `compile_model` wraps model + loss in torch.compile
    (the optimizer step stays eager), as `mlp_step.torch_runner`."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(matmul_peak.xla_cpu_threads())
    model = seq2seq_torch.build(params0, device=device)
    opt = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, eps=1e-8)
    src = torch.from_numpy(batch["src"]).long().to(device)
    tgt_in = torch.from_numpy(batch["tgt_in"]).long().to(device)
    tgt_out = torch.from_numpy(batch["tgt_out"]).long().to(device)

    def forward():
        logits = model(src, tgt_in)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt_out.reshape(-1))

    loss_of = torch.compile(forward) if compile_model else forward

    def one_step():
        opt.zero_grad(set_to_none=True)
        loss = loss_of()
        loss.backward()
        opt.step()
        return loss

    return _cli.torch_train_runner(one_step, device)


def benchmark(
    *,
    steps: int,
    repeats: int,
    torch_compile: bool = True,
    seed: int = 0,
    vocab: int = VOCAB,
    embed: int = EMBED,
    hidden: int = HIDDEN,
) -> dict:
    info = machine()
    batch = make_batch(seed, vocab=vocab)
    flops = step_flops(vocab=vocab, embed=embed, hidden=hidden)
    runners, notes = {}, {}
    runners["jax"], params0 = jax_runner(batch, seed=seed, vocab=vocab, embed=embed, hidden=hidden)
    make = functools.partial(torch_runner, batch, params0)
    _cli.add_torch_runners(runners, notes, make, torch_compile)
    parity = _cli.loss_parity(runners)
    before = cpu_snapshot()
    seconds, busy = time_runners(runners, steps=steps, repeats=repeats)
    contention = others_busy(before, cpu_snapshot())
    results = {}
    for name, runner in runners.items():
        r = summarize(seconds[name], busy[name], steps=steps, flops=flops)
        r["warmup_losses"] = runner.warmup_losses
        results[name] = r
    ratios = {}
    for name, res in results.items():
        if name.startswith("torch"):
            _cli.add_ratios(ratios, notes, "jax_over_" + _cli.torch_key(name), results["jax"], res)
    return {
        "machine": {**info, "loadavg_1min_end": os.getloadavg()[0], "others_busy": contention},
        "config": {
            "vocab": vocab,
            "embed": embed,
            "hidden": hidden,
            "batch": BATCH,
            "src_len": SRC_LEN,
            "tgt_len": TGT_LEN,
            "lr": LEARNING_RATE,
            "steps": steps,
            "repeats": repeats,
            "seed": seed,
        },
        "flops": flops,
        "results": results,
        "ratios": ratios,
        "notes": notes,
        "parity_max_abs_loss_diff": parity,
        "param_count": int(sum(np.size(v) for v in jax.tree.leaves(params0))),
    }


def format_result(res: dict) -> str:
    m, c = res["machine"], res["config"]
    lines = [
        (
            f"{_cli.machine_line(m)}; other processes kept {m['others_busy']:.0%} of the CPUs "
            "busy while timing"
        ),
        (
            f"Seq2Seq GRU + additive attention, vocab {c['vocab']}, embed {c['embed']}, hidden "
            f"{c['hidden']}, batch {c['batch']} x {c['src_len']} -> {c['tgt_len']}; "
            f"{res['param_count']:,} params; model FLOPs {res['flops']['model'] / 1e9:.2f} G/step"
        ),
        _cli.parity_text(res["parity_max_abs_loss_diff"]),
        "",
        f"{'implementation':<16}{'steps/s':>9}{'ms/step':>10}{'GFLOP/s':>9}{'quiet':>7}",
    ]
    for name, r in res["results"].items():
        lines.append(
            f"{name:<16}{r['steps_per_s']:>9.2f}{r['ms_per_step']:>10.1f}{r['gflops']:>9.1f}"
            f"{r['quiet_repeats']:>7}"
        )
    lines.append("")
    goal = lambda k: "  goal >= 1.0" if k == "jax_over_torch_eager" else ""
    lines += _cli.ratio_lines(res["ratios"], width=40, goal=goal, notes=res["notes"])
    lines += _cli.contention_warning(m["others_busy"])
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = _cli.parser(__doc__, steps=5, repeats=7)
    parser.add_argument("--vocab", type=int, default=VOCAB, help="(smaller only for tests)")
    parser.add_argument("--embed", type=int, default=EMBED, help="(smaller only for tests)")
    parser.add_argument("--hidden", type=int, default=HIDDEN, help="(smaller only for tests)")
    _cli.add_no_torch_compile(parser)
    args = parser.parse_args(argv)
    _cli.exact_matmuls()
    res = benchmark(
        steps=args.steps,
        repeats=args.repeats,
        torch_compile=args.torch_compile,
        vocab=args.vocab,
        embed=args.embed,
        hidden=args.hidden,
    )
    return _cli.finish(res, format_result(res), args.json)


if __name__ == "__main__":
    main()
