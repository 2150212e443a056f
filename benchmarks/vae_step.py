"""One Adam train step of the MLP VAE (`dl.models.vae.VAE`: Burda et al.'s 784-200-200-50 tanh
by default, or Kingma & Welling's 784-400-20 with `--hidden 400 --latent 20`), Bernoulli
decoder, negative ELBO with the analytic KL and one reparameterized sample, batch 100, timed
through dl's engine (`jit_train_step` on `dl.objectives.vae.vae_objective`) side by side with
the same model, weights, batch and noise in PyTorch (eager and `torch.compile`), in one process.

Run:    python -m benchmarks.vae_step [--steps N] [--repeats R] [--json PATH] [--hidden ...]
                                      [--latent L] [--batch B] [--no-torch-compile]
Expect: see BENCHMARKS.md ("vae_step") for the figures on the 2-core CPU.

FLOPs per step (B = batch): 6 B x (multiply-adds of one forward pass through the encoder's and
decoder's dense layers); the first layer's input gradient is not formed, so the executed figure
is 2 B x 784 x hidden_1 fewer. Activations, sampling, the KL and Adam are not counted (~1%).

Method: as `benchmarks.mlp_step`: JAX's initial parameters are copied into PyTorch (flax kernels
[in, out] to torch weights [out, in]); both sides train on the same binary batch, already on the
device, with the same Adam (lr 1e-3, b1 0.9, b2 0.999, eps 1e-8). The engine draws the noise of
step s as normal(fold_in(state.rng, s), [1, B, L]); PyTorch is given exactly those draws for the
WARMUP_STEPS warm-up steps, so their losses must agree before anything is timed; timed PyTorch
steps draw with torch.randn (the same work).
"""

from __future__ import annotations

import functools
import itertools
import os

import jax
import numpy as np

from benchmarks import _cli, matmul_peak
from benchmarks.mlp_step import (
    WARMUP_STEPS,
    Runner,
    cpu_snapshot,
    machine,
    others_busy,
    summarize,
    time_runners,
)
from dl import optim
from dl.models.vae import VAE
from dl.objectives.vae import engine_loss, vae_objective
from dl.train.step import jit_train_step
from dl.train.supervised import init_state

BATCH = 100
HIDDEN = (200, 200)
LATENT = 50
PIXELS = 784
LEARNING_RATE = 1e-3


def forward_macs(hidden=HIDDEN, latent: int = LATENT) -> list[int]:
    """Multiply-adds of one example's forward pass, per dense layer (encoder, then decoder)."""
    enc = [PIXELS, *hidden]
    dec = [latent, *reversed(hidden), PIXELS]
    macs = [a * b for a, b in itertools.pairwise(enc)] + [2 * hidden[-1] * latent]
    return macs + [a * b for a, b in itertools.pairwise(dec)]


def step_flops(hidden=HIDDEN, latent: int = LATENT, batch: int = BATCH) -> dict[str, int]:
    macs = forward_macs(hidden, latent)
    model = 6 * batch * sum(macs)
    return {
        "model": model,
        "matmul_executed": model - 2 * batch * macs[0],
        "elementwise": 0,  # not counted (module docstring)
        "forward_macs_per_example": sum(macs),
    }


def make_batch(seed: int, batch: int = BATCH) -> np.ndarray:
    """x: [batch, 784] float32 in {0, 1} (a binarized-MNIST-like batch, density 0.13)."""
    return (np.random.default_rng(seed).random((batch, PIXELS)) < 0.13).astype(np.float32)


def jax_runner(x, *, hidden, latent, seed: int, lr: float) -> tuple[Runner, dict, list]:
    """dl's engine. Returns the runner, the initial parameters (host numpy, for PyTorch) and the
    noise [B, L] of each warm-up step as the engine draws it."""
    model = VAE(hidden=tuple(hidden), latent=latent, out=PIXELS, activation="tanh")
    state = init_state(model, optim.adam(lr), x[:1], seed=seed)
    params0 = jax.tree.map(np.array, jax.device_get(state.params))
    eps = [
        np.asarray(jax.random.normal(jax.random.fold_in(state.rng, s), (1, len(x), latent))[0])
        for s in range(WARMUP_STEPS)
    ]
    step = jit_train_step(engine_loss(vae_objective(model)))
    batch = jax.device_put({"x": x, "mask": np.ones(len(x), np.float32)})
    return _cli.jax_train_runner(step, state, batch), params0, eps


def torch_vae(params0: dict):
    """The same VAE in torch with `params0` copied in; forward(x, eps) -> mean negative ELBO."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    def dense(p):
        m = nn.Linear(*p["kernel"].shape)
        with torch.no_grad():
            m.weight.copy_(torch.from_numpy(np.ascontiguousarray(p["kernel"].T)))
            m.bias.copy_(torch.from_numpy(p["bias"]))
        return m

    enc, dec = params0["encoder"], params0["dec"]
    n_enc = sum(k.startswith("enc_") and k[4:].isdigit() for k in enc)
    n_dec = sum(k.startswith("dec_") and k[4:].isdigit() for k in dec)

    class TorchVAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.ModuleList([dense(enc[f"enc_{i}"]) for i in range(n_enc)])
            self.mean, self.logvar = dense(enc["enc_mean"]), dense(enc["enc_scale"])
            self.dec = nn.ModuleList([dense(dec[f"dec_{i}"]) for i in range(n_dec)])
            self.logits = dense(dec["dec_logits"])

        def forward(self, x, eps):
            h = x
            for layer in self.enc:
                h = torch.tanh(layer(h))
            mean, logvar = self.mean(h), self.logvar(h)
            h = mean + torch.exp(0.5 * logvar) * eps
            for layer in self.dec:
                h = torch.tanh(layer(h))
            nll = F.binary_cross_entropy_with_logits(self.logits(h), x, reduction="sum")
            kl = 0.5 * torch.sum(torch.exp(logvar) + mean**2 - 1.0 - logvar)
            return (nll + kl) / x.shape[0]

    return TorchVAE()


def torch_runner(
    x, params0: dict, warmup_eps: list, *, lr: float, device: str, compile_model: bool = False
) -> Runner:
    """torch.optim.Adam on the copied VAE; `compile_model` wraps the loss in torch.compile."""
    import torch

    torch.set_num_threads(matmul_peak.xla_cpu_threads())
    model = torch_vae(params0).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8)
    xt = torch.from_numpy(x).to(device)
    loss_of = torch.compile(model) if compile_model else model
    latent = warmup_eps[0].shape[-1]

    def one_step(eps):
        opt.zero_grad(set_to_none=True)
        loss = loss_of(xt, eps)
        loss.backward()
        opt.step()
        return loss

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    losses = [float(one_step(torch.tensor(e, device=device)).detach()) for e in warmup_eps]

    def run(steps: int) -> None:
        for _ in range(steps):
            one_step(torch.randn(len(x), latent, device=device))
        sync()

    return Runner(run, losses)


def benchmark(
    *,
    steps: int,
    repeats: int,
    hidden=HIDDEN,
    latent: int = LATENT,
    batch: int = BATCH,
    torch_compile: bool = True,
    seed: int = 0,
    lr: float = LEARNING_RATE,
) -> dict:
    """Runs everything; the JSON-able result (ratios under `ratios`)."""
    info = machine()
    x = make_batch(seed, batch)
    flops = step_flops(hidden, latent, batch)
    runners, notes = {}, {}
    runners["jax"], params0, eps = jax_runner(x, hidden=hidden, latent=latent, seed=seed, lr=lr)
    make = functools.partial(torch_runner, x, params0, eps, lr=lr)
    _cli.add_torch_runners(runners, notes, make, torch_compile)
    parity = _cli.loss_parity(runners)
    before = cpu_snapshot()
    seconds, busy = time_runners(runners, steps=steps, repeats=repeats)
    results = {}
    for name, runner in runners.items():
        results[name] = summarize(seconds[name], busy[name], steps=steps, flops=flops)
        results[name]["images_per_s"] = results[name]["steps_per_s"] * batch
        results[name]["warmup_losses"] = runner.warmup_losses
    ratios = {}
    for name, res in results.items():
        if name.startswith("torch"):
            _cli.add_ratios(ratios, notes, f"jax_over_{_cli.torch_key(name)}", results["jax"], res)
    return {
        "machine": {**info, "loadavg_1min_end": os.getloadavg()[0]},
        "config": {
            "batch": batch,
            "hidden": list(hidden),
            "latent": latent,
            "lr": lr,
            "steps": steps,
            "repeats": repeats,
            "seed": seed,
        },
        "flops": flops,
        "results": results,
        "ratios": ratios,
        "notes": notes,
        "parity_max_abs_loss_diff": parity,
        "others_busy_fraction": others_busy(before, cpu_snapshot()),
        "param_count": int(sum(np.size(v) for v in jax.tree.leaves(params0))),
    }


def format_result(res: dict) -> str:
    m, c = res["machine"], res["config"]
    lines = [
        _cli.machine_line(m),
        (
            f"VAE 784-{'-'.join(map(str, c['hidden']))}-{c['latent']}, batch {c['batch']}: "
            f"{res['param_count']:,} params; model FLOPs {res['flops']['model'] / 1e9:.3f} G/step; "
            f"other processes kept {res['others_busy_fraction']:.0%} of the CPUs busy; "
            + _cli.parity_text(res["parity_max_abs_loss_diff"])
        ),
        (
            f"{'implementation':<16}{'steps/s':>9}{'images/s':>10}{'ms/step':>9}{'GFLOP/s':>9}"
            f"{'quiet steps/s':>15}"
        ),
    ]
    for name, s in res["results"].items():
        q = s["quiet_steps_per_s"]
        quiet = f"{'-' if q is None else f'{q:.2f}'} ({s['quiet_repeats']})"
        lines.append(
            f"{name:<16}{s['steps_per_s']:>9.2f}{s['images_per_s']:>10.0f}"
            f"{s['ms_per_step']:>9.2f}{s['gflops']:>9.1f}{quiet:>15}"
        )
    lines += _cli.ratio_lines(res["ratios"], width=40, goal="  goal >= 1.0", notes=res["notes"])
    lines += _cli.contention_warning(res["others_busy_fraction"])
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = _cli.parser(__doc__, steps=20, repeats=7)
    parser.add_argument("--batch", type=int, default=BATCH, help="images per step (default 100)")
    parser.add_argument("--hidden", type=int, nargs="+", default=list(HIDDEN))
    parser.add_argument("--latent", type=int, default=LATENT)
    _cli.add_no_torch_compile(parser)
    args = parser.parse_args(argv)
    _cli.exact_matmuls()
    res = benchmark(
        steps=args.steps,
        repeats=args.repeats,
        hidden=tuple(args.hidden),
        latent=args.latent,
        batch=args.batch,
        torch_compile=args.torch_compile,
    )
    return _cli.finish(res, format_result(res), args.json)


if __name__ == "__main__":
    main()
