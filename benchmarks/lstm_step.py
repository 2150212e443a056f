"""One SGD train step of the "small" LSTM language model of Zaremba, Sutskever & Vinyals 2014
("Recurrent neural network regularization", sec. 4.1): embedding 200, 2 x 200 LSTM, untied
softmax 200 -> 10k, batch 20, 20 steps unrolled, SGD lr 1 with the gradient clipped to global
norm 5, no dropout. Timed through dl's engine (`dl.nn.sequence.StackedRNN` of
`LSTM(variant="NP")`, `jit_train_step`) side by side with the same model, weights and batch in
PyTorch (`torch.nn.LSTM`, eager and `torch.compile`), in one process.

Run:    python -m benchmarks.lstm_step [--steps N] [--repeats R] [--json PATH] [--unroll U ...]
                                       [--no-torch-compile]
Expect: see BENCHMARKS.md ("lstm_step") for the figures on the 2-core CPU.

Loss: as Zaremba et al.'s code (and TensorFlow's PTB tutorial), the per-token cross-entropy
summed over the 20 steps and averaged over the batch; every step starts from a zero state
(the benchmark times one step; carrying the state between batches costs nothing extra).

FLOPs per step, model convention (6 x multiply-adds of one forward pass per token, B T tokens):
per token the softmax 200 x 10k and per layer the LSTM's input and recurrent products
2 x 200 x 800; the embedding lookup, gates, softmax normalization and SGD are not counted.

Method: as `benchmarks.mlp_step`: JAX's initial parameters are copied into PyTorch
(`input/kernel` -> weight_ih.T, `recurrent_kernel` -> weight_hh.T, `input/bias` -> bias_ih,
bias_hh = 0 and frozen, so that both sides train one bias per gate; the embedding and the softmax layer as they are), both sides train on the same
batch with the same clipped SGD, and the first WARMUP_STEPS losses of every implementation are
compared before anything is timed. Repeats are interleaved (`mlp_step.time_runners`); the
figures are from the median repeat, and from the quiet repeats where there were any.
"""

from __future__ import annotations

import functools
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import _cli, matmul_peak
from benchmarks.mlp_step import (
    Runner,
    cpu_snapshot,
    machine,
    others_busy,
    summarize,
)
from benchmarks.mlp_step import time_runners as _time_runners
from dl import optim
from dl.nn.recurrent import LSTM
from dl.nn.sequence import StackedRNN
from dl.ops.losses import cross_entropy
from dl.train.step import jit_train_step
from dl.train.supervised import init_state

VOCAB = 10_000
HIDDEN = 200  # = the embedding size
LAYERS = 2
BATCH = 20
STEPS_UNROLLED = 20
LEARNING_RATE = 1.0
MAX_GRAD_NORM = 5.0
INIT_SCALE = 0.1  # Zaremba et al.: every parameter U(-0.1, 0.1)
DEFAULT_UNROLL = 1  # scan unroll of the engine's LSTM layers (see BENCHMARKS.md)


def _uniform(scale: float):
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, minval=-scale, maxval=scale)

    return init


class SmallLM(nn.Module):
    """tokens [B, T] int -> logits [B, T, vocab]: embedding, stacked NP LSTM, dense softmax."""

    vocab: int = VOCAB
    hidden: int = HIDDEN
    layers: int = LAYERS
    unroll: int = DEFAULT_UNROLL

    @nn.compact
    def __call__(self, tokens, *, train: bool = False):
        init = _uniform(INIT_SCALE)
        x = nn.Embed(self.vocab, self.hidden, embedding_init=init, name="embed")(tokens)
        cell = functools.partial(
            LSTM,
            variant="NP",
            forget_bias_init=None,
            kernel_init=init,
            recurrent_kernel_init=init,
            bias_init=init,
        )
        y, _ = StackedRNN(self.hidden, self.layers, cell=cell, unroll=self.unroll, name="lstm")(
            x, train=train
        )
        return nn.Dense(self.vocab, kernel_init=init, bias_init=init, name="softmax")(y)


def lm_loss(model: SmallLM):
    """The engine's loss_fn: cross-entropy summed over time, averaged over the batch."""

    def loss_fn(params, extra, batch, rng):
        del rng
        logits = model.apply({"params": params, **extra}, batch["x"])
        nll = cross_entropy(logits=logits, targets=batch["y"], reduce=False)  # [B, T]
        loss = jnp.mean(jnp.sum(nll, axis=-1))
        return loss, ({"token_nll": loss / batch["y"].shape[-1]}, extra)

    return loss_fn


def step_flops(batch=BATCH, steps=STEPS_UNROLLED, vocab=VOCAB, hidden=HIDDEN, layers=LAYERS):
    macs = hidden * vocab + layers * 2 * hidden * 4 * hidden  # per token
    return {
        "model": 6 * batch * steps * macs,
        "matmul_executed": 6 * batch * steps * macs,
        "elementwise": 0,  # not counted (module docstring)
        "forward_macs_per_token": macs,
    }


def make_batch(seed: int, batch=BATCH, steps=STEPS_UNROLLED, vocab=VOCAB):
    """x, y: [batch, steps] int32 tokens, y = x shifted by one (as a language model reads)."""
    tokens = np.random.default_rng(seed).integers(0, vocab, size=(batch, steps + 1))
    tokens = tokens.astype(np.int32)
    return tokens[:, :-1], tokens[:, 1:]


def make_tx():
    return optax.chain(optim.clip_by_global_norm(MAX_GRAD_NORM), optim.sgd(LEARNING_RATE))


def jax_runner(x, y, *, seed: int, unroll: int, vocab=VOCAB, hidden=HIDDEN) -> tuple[Runner, dict]:
    """dl's engine: `init_state`, clipped `dl.optim.sgd`, the jitted, donated `jit_train_step`."""
    model = SmallLM(vocab=vocab, hidden=hidden, unroll=unroll)
    state = init_state(model, make_tx(), x[:1], seed=seed)
    params0 = jax.tree.map(np.array, jax.device_get(state.params))
    step = jit_train_step(lm_loss(model))
    batch = jax.device_put({"x": x, "y": y})
    return _cli.jax_train_runner(step, state, batch), params0


def torch_model(params0: dict, layers: int = LAYERS):
    """Embedding, torch.nn.LSTM (batch first) and Linear with `params0` copied in."""
    import torch
    from torch import nn as tnn

    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))
    emb = params0["embed"]["embedding"]
    vocab, hidden = emb.shape

    class Model(tnn.Module):
        def __init__(self):
            super().__init__()
            self.embed = tnn.Embedding(vocab, hidden)
            self.lstm = tnn.LSTM(hidden, hidden, num_layers=layers, batch_first=True)
            self.softmax = tnn.Linear(hidden, vocab)

        def forward(self, tokens):
            y, _ = self.lstm(self.embed(tokens))
            return self.softmax(y)

    m = Model()
    with torch.no_grad():
        m.embed.weight.copy_(t(emb))
        for k in range(layers):
            p = params0["lstm"][f"layer_{k}"]
            getattr(m.lstm, f"weight_ih_l{k}").copy_(t(p["input"]["kernel"].T))
            getattr(m.lstm, f"weight_hh_l{k}").copy_(t(p["recurrent_kernel"].T))
            getattr(m.lstm, f"bias_ih_l{k}").copy_(t(p["input"]["bias"]))
            # Ours has one bias per gate; torch's two would both train (twice the step).
            getattr(m.lstm, f"bias_hh_l{k}").zero_()
            getattr(m.lstm, f"bias_hh_l{k}").requires_grad_(False)
        m.softmax.weight.copy_(t(params0["softmax"]["kernel"].T))
        m.softmax.bias.copy_(t(params0["softmax"]["bias"]))
    return m


def torch_runner(x, y, params0, *, device: str, compile_model: bool = False) -> Runner:
    """torch.optim.SGD(lr 1) after clip_grad_norm_(5); `compile_model` wraps model + loss in
    torch.compile (clipping and the optimizer step stay eager), as `mlp_step.torch_runner`."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(matmul_peak.xla_cpu_threads())
    model = torch_model(params0).to(device)
    trained = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(trained, lr=LEARNING_RATE)
    xt = torch.from_numpy(x).long().to(device)
    yt = torch.from_numpy(y).long().to(device)

    def forward():
        logits = model(xt)
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), yt.reshape(-1), reduction="sum")
        return nll / xt.shape[0]

    loss_of = torch.compile(forward) if compile_model else forward

    def one_step():
        opt.zero_grad(set_to_none=True)
        loss = loss_of()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, MAX_GRAD_NORM)
        opt.step()
        return loss

    return _cli.torch_train_runner(one_step, device)


def jax_name(unroll: int) -> str:
    return f"jax unroll={unroll}"


def ratio_key(unroll: int, torch_name: str) -> str:
    """jax_over_torch_eager for the default unroll; jax_unroll4_over_torch_eager etc. else."""
    side = "jax" if unroll == DEFAULT_UNROLL else f"jax_unroll{unroll}"
    return f"{side}_over_{_cli.torch_key(torch_name)}"


def benchmark(
    *,
    steps: int,
    repeats: int,
    unrolls=(DEFAULT_UNROLL,),
    torch_compile: bool = True,
    seed: int = 0,
    vocab: int = VOCAB,
    hidden: int = HIDDEN,
    batch: int = BATCH,
    steps_unrolled: int = STEPS_UNROLLED,
) -> dict:
    """Runs everything; the JSON-able result (see `format_result`)."""
    info = machine()
    x, y = make_batch(seed, batch, steps_unrolled, vocab)
    flops = step_flops(batch, steps_unrolled, vocab, hidden)
    runners, notes, params0 = {}, {}, None
    for u in unrolls:
        runners[jax_name(u)], params0 = jax_runner(
            x, y, seed=seed, unroll=u, vocab=vocab, hidden=hidden
        )
    make = functools.partial(torch_runner, x, y, params0)
    _cli.add_torch_runners(runners, notes, make, torch_compile)
    parity = _cli.loss_parity(runners)
    before = cpu_snapshot()
    seconds, busy = _time_runners(runners, steps=steps, repeats=repeats)
    contention = others_busy(before, cpu_snapshot())
    tokens = batch * steps_unrolled
    results = {}
    for name, runner in runners.items():
        r = summarize(seconds[name], busy[name], steps=steps, flops=flops)
        r["tokens_per_s"] = r["steps_per_s"] * tokens
        q = r["quiet_steps_per_s"]
        r["quiet_tokens_per_s"] = None if q is None else q * tokens
        r["warmup_losses"] = runner.warmup_losses
        results[name] = r
    ratios = {}
    for u in unrolls:
        j = results[jax_name(u)]
        for name, res in results.items():
            if name.startswith("torch"):
                _cli.add_ratios(ratios, notes, ratio_key(u, name), j, res)
    return {
        "machine": {**info, "loadavg_1min_end": os.getloadavg()[0], "others_busy": contention},
        "config": {
            "vocab": vocab,
            "hidden": hidden,
            "layers": LAYERS,
            "batch": batch,
            "steps_unrolled": steps_unrolled,
            "lr": LEARNING_RATE,
            "max_grad_norm": MAX_GRAD_NORM,
            "steps": steps,
            "repeats": repeats,
            "seed": seed,
            "unrolls": list(unrolls),
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
    machine_line = (
        f"{_cli.machine_line(m)}; other processes kept {m['others_busy']:.0%} of the CPUs busy "
        "while timing"
    )
    model_line = (
        f"LM {c['vocab']} vocab, {c['layers']} x {c['hidden']} LSTM, batch {c['batch']} x "
        f"{c['steps_unrolled']} steps; {res['param_count']:,} params; model FLOPs "
        f"{res['flops']['model'] / 1e9:.3f} G/step"
    )
    parity_line = _cli.parity_text(res["parity_max_abs_loss_diff"])
    header = (
        f"{'implementation':<18}{'steps/s':>9}{'tokens/s':>10}{'ms/step':>9}{'GFLOP/s':>9}"
        f"{'quiet tokens/s':>16}{'min..max ms/step':>20}"
    )
    lines = [machine_line, model_line, parity_line, "", header]
    for name, r in res["results"].items():
        lo, hi = (1e3 * t / c["steps"] for t in (min(r["seconds"]), max(r["seconds"])))
        q = r["quiet_tokens_per_s"]
        quiet = f"{'-' if q is None else f'{q:.0f}'} ({r['quiet_repeats']})"
        lines.append(
            f"{name:<18}{r['steps_per_s']:>9.2f}{r['tokens_per_s']:>10.0f}{r['ms_per_step']:>9.1f}"
            f"{r['gflops']:>9.1f}{quiet:>16}{f'{lo:.0f}..{hi:.0f}':>20}"
        )
    lines.append("")
    goal = lambda k: "  goal >= 1.2" if k.startswith("jax_over_torch_eager") else ""
    lines += _cli.ratio_lines(res["ratios"], width=44, goal=goal, notes=res["notes"])
    lines += _cli.contention_warning(m["others_busy"])
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = _cli.parser(__doc__, steps=10, repeats=9)
    parser.add_argument("--unroll", type=int, nargs="+", default=[DEFAULT_UNROLL])
    parser.add_argument("--vocab", type=int, default=VOCAB, help="(smaller only for tests)")
    parser.add_argument("--hidden", type=int, default=HIDDEN, help="(smaller only for tests)")
    _cli.add_no_torch_compile(parser)
    args = parser.parse_args(argv)
    _cli.exact_matmuls()
    res = benchmark(
        steps=args.steps,
        repeats=args.repeats,
        unrolls=tuple(args.unroll),
        torch_compile=args.torch_compile,
        vocab=args.vocab,
        hidden=args.hidden,
    )
    return _cli.finish(res, format_result(res), args.json)


if __name__ == "__main__":
    main()
