"""One DCGAN step (a discriminator update, then a generator update; batch 64) of the MNIST DCGAN
(`dl.models.dcgan`: G z 100 -> dense 7x7x128 -> BN -> ReLU -> convT 4x4/2 64 -> BN -> ReLU ->
convT 4x4/2 1 -> tanh; D conv 4x4/2 64 -> lrelu -> conv 4x4/2 128 -> BN -> lrelu -> dense 1),
timed through dl's two-player engine (`dl.train.adversarial.jit_adversarial_step` with
`dl.objectives.gan_players.dcgan_losses`) side by side with the same models, weights, batch and
latents in PyTorch (eager and `torch.compile`), in one process.

Run:    python -m benchmarks.gan_step [--steps N] [--repeats R] [--json PATH] [--batch B]
                                      [--widths G0 G1 D0 D1] [--no-torch-compile]
Expect: see BENCHMARKS.md ("gan_step") for the figures on the 2-core CPU.

Method: as `benchmarks.cnn_step`. JAX's initial parameters are copied into PyTorch (dense
kernels transposed; conv kernels HWIO -> OIHW; transposed-conv kernels [kh, kw, I, O] ->
[I, O, kh, kw]; torch reshapes G's dense output and flattens D's maps channels-last, so the
flax layouts carry over unpermuted). Both sides use Adam (lr 2e-4, b1 0.5, b2 0.999, eps 1e-8
outside the root), batch norm in training mode (momentum 0.1 in torch's convention), the
log-sigmoid losses (torch: `binary_cross_entropy_with_logits`), and per step the same two latent
batches: dl's engine draws z ~ N(0, I) from fold_in(side key, side step), and the benchmark
computes those same draws and hands them to PyTorch. The first WARMUP_STEPS (d_loss, g_loss)
pairs of every implementation are compared before anything is timed.

FLOPs per step (B = batch; M_G, M_D = multiply-adds of one G / D forward pass on one example):
the D update runs G forward once and D forward + backward on the real and the fake batch
(2 x 3 M_D); the G update runs G forward + backward (3 M_G) and D forward + backward (3 M_D), so
model FLOPs = 2 B (4 M_G + 9 M_D). Batch norm, activations and Adam are not counted.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
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
from dl.models.dcgan import Discriminator, Generator
from dl.objectives.gan_players import dcgan_losses, sample_latent
from dl.optim import adam
from dl.train import adversarial

BATCH = 64
LATENT = 100
WIDTHS = (128, 64, 64, 128)  # G at 7x7, 14x14; D at 14x14, 7x7
LR, B1, B2 = 2e-4, 0.5, 0.999


def forward_macs(widths=WIDTHS, latent: int = LATENT) -> dict[str, int]:
    g0, g1, d0, d1 = widths
    g = latent * 49 * g0 + 49 * 16 * g0 * g1 + 196 * 16 * g1  # dense, convT 7->14, convT 14->28
    d = 196 * 16 * d0 + 49 * 16 * d0 * d1 + 49 * d1  # conv 28->14, conv 14->7, dense
    return {"generator": g, "discriminator": d}


def step_flops(widths=WIDTHS, batch: int = BATCH, latent: int = LATENT) -> dict[str, int]:
    m = forward_macs(widths, latent)
    model = 2 * batch * (4 * m["generator"] + 9 * m["discriminator"])
    return {"model": model, "matmul_executed": model, "elementwise": 0, **m}


def make_batch(seed: int, batch: int = BATCH) -> np.ndarray:
    """Real images [batch, 28, 28, 1] float32 in [-1, 1) (the generator's tanh range)."""
    return np.random.default_rng(seed).uniform(-1, 1, (batch, 28, 28, 1)).astype(np.float32)


def models(widths=WIDTHS) -> tuple[Generator, Discriminator]:
    return Generator(channels=widths[:2]), Discriminator(channels=widths[2:])


def jax_runner(x: np.ndarray, *, seed: int, widths=WIDTHS) -> tuple[Runner, dict, list]:
    """dl's engine. Returns the runner, the initial variables (host numpy, for PyTorch), and the
    latents [(z_d, z_g)] the engine drew in each warm-up step (for PyTorch)."""
    g, d = models(widths)
    kg, kd, kstate = jax.random.split(jax.random.PRNGKey(seed), 3)
    gv = dict(jax.jit(functools.partial(g.init, train=False))(kg, jnp.zeros((2, LATENT))))
    dv = dict(jax.jit(functools.partial(d.init, train=False))(kd, jnp.asarray(x[:2])))
    variables0 = jax.tree.map(np.array, jax.device_get({"g": gv, "d": dv}))
    tx = adam(LR, b1=B1, b2=B2)
    state = adversarial.create(
        d_apply=d.apply,
        d_params=dv.pop("params"),
        d_tx=tx,
        g_apply=g.apply,
        g_params=gv.pop("params"),
        g_tx=tx,
        rng=kstate,
        d_extra=dv,
        g_extra=gv,
    )
    latents = [
        tuple(
            np.array(sample_latent(jax.random.fold_in(side.rng, i), len(x), LATENT))
            for side in (state.d, state.g)
        )
        for i in range(WARMUP_STEPS)
    ]
    step = adversarial.jit_adversarial_step(*dcgan_losses(g, d, latent=LATENT))
    batch = jax.device_put({"x": x, "y": np.zeros(len(x), np.int32), "mask": np.ones(len(x))})
    losses = []
    for _ in range(WARMUP_STEPS):
        state, metrics = step(state, batch)
        losses += [float(metrics["d_loss"]), float(metrics["g_loss"])]
    holder = [state]

    def run(steps: int) -> None:
        s = holder[0]
        for _ in range(steps):
            s, _ = step(s, batch)
        holder[0] = jax.block_until_ready(s)

    return Runner(run, losses), variables0, latents


def torch_models(variables0: dict, widths=WIDTHS):
    """The same G and D in torch (NCHW inside), with the flax variables copied in."""
    import torch
    from torch import nn

    def t(a):
        return torch.from_numpy(np.ascontiguousarray(a))

    def bn(module, p, stats):
        with torch.no_grad():
            module.weight.copy_(t(p["scale"]))
            module.bias.copy_(t(p["bias"]))
            module.running_mean.copy_(t(stats["mean"]))
            module.running_var.copy_(t(stats["var"]))
        return module

    g0, g1, d0, d1 = widths
    gp, gs = variables0["g"]["params"], variables0["g"]["batch_stats"]
    dp, ds = variables0["d"]["params"], variables0["d"]["batch_stats"]

    class G(nn.Module):
        def __init__(self):
            super().__init__()
            self.project = nn.Linear(LATENT, 49 * g0, bias=False)
            self.bn0 = bn(nn.BatchNorm1d(49 * g0), gp["bn_project"], gs["bn_project"])
            self.up0 = nn.ConvTranspose2d(g0, g1, 4, 2, 1, bias=False)
            self.bn1 = bn(nn.BatchNorm2d(g1), gp["bn_up_0"], gs["bn_up_0"])
            self.up1 = nn.ConvTranspose2d(g1, 1, 4, 2, 1)
            with torch.no_grad():
                self.project.weight.copy_(t(gp["project"]["kernel"].T))
                self.up0.weight.copy_(t(gp["up_0"]["kernel"].transpose(2, 3, 0, 1)))
                self.up1.weight.copy_(t(gp["up_1"]["kernel"].transpose(2, 3, 0, 1)))
                self.up1.bias.copy_(t(gp["up_1"]["bias"]))

        def forward(self, z):
            h = torch.relu(self.bn0(self.project(z)))
            h = h.view(-1, 7, 7, g0).permute(0, 3, 1, 2)  # flax's (h, w, c) layout
            h = torch.relu(self.bn1(self.up0(h)))
            return torch.tanh(self.up1(h))

    class D(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv0 = nn.Conv2d(1, d0, 4, 2, 1)
            self.conv1 = nn.Conv2d(d0, d1, 4, 2, 1, bias=False)
            self.bn1 = bn(nn.BatchNorm2d(d1), dp["bn_1"], ds["bn_1"])
            self.head = nn.Linear(49 * d1, 1)
            with torch.no_grad():
                for mod, p in ((self.conv0, dp["conv_0"]), (self.conv1, dp["conv_1"])):
                    mod.weight.copy_(t(p["kernel"].transpose(3, 2, 0, 1)))
                self.conv0.bias.copy_(t(dp["conv_0"]["bias"]))
                self.head.weight.copy_(t(dp["head"]["kernel"].T))
                self.head.bias.copy_(t(dp["head"]["bias"]))

        def forward(self, x):
            h = nn.functional.leaky_relu(self.conv0(x), 0.2)
            h = nn.functional.leaky_relu(self.bn1(self.conv1(h)), 0.2)
            return self.head(h.permute(0, 2, 3, 1).flatten(1))[:, 0]  # flax's (h, w, c)

    return G(), D()


def torch_runner(
    x: np.ndarray,
    variables0: dict,
    latents: list,
    *,
    device: str,
    compile_model: bool = False,
    widths=WIDTHS,
) -> Runner:
    """torch.optim.Adam on both copied models, the reference DCGAN step (D on real and on
    detached fakes, then G against the updated D); `compile_model` wraps the two loss
    computations in torch.compile (the optimizer steps stay eager)."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(matmul_peak.xla_cpu_threads())
    g, d = (m.to(device) for m in torch_models(variables0, widths))
    opt_g = torch.optim.Adam(g.parameters(), lr=LR, betas=(B1, B2), eps=1e-8)
    opt_d = torch.optim.Adam(d.parameters(), lr=LR, betas=(B1, B2), eps=1e-8)
    real = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(device)
    zs = [tuple(torch.from_numpy(z).to(device) for z in pair) for pair in latents]

    def d_loss(z):
        fake = g(z).detach()
        lr_, lf = d(real), d(fake)
        return F.binary_cross_entropy_with_logits(
            lr_, torch.ones_like(lr_)
        ) + F.binary_cross_entropy_with_logits(lf, torch.zeros_like(lf))

    def g_loss(z):
        logits = d(g(z))
        return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))

    if compile_model:
        d_loss, g_loss = torch.compile(d_loss), torch.compile(g_loss)

    def one_step(z_d, z_g):
        opt_d.zero_grad(set_to_none=True)
        ld = d_loss(z_d)
        ld.backward()
        opt_d.step()
        opt_g.zero_grad(set_to_none=True)
        lg = g_loss(z_g)
        lg.backward()
        opt_g.step()
        return ld, lg

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    losses = []
    for z_d, z_g in zs:
        ld, lg = one_step(z_d, z_g)
        losses += [float(ld.detach()), float(lg.detach())]

    def run(steps: int) -> None:
        for i in range(steps):
            one_step(*zs[i % len(zs)])
        sync()

    return Runner(run, losses)


def benchmark(
    *,
    steps: int,
    repeats: int,
    torch_compile: bool = True,
    seed: int = 0,
    batch: int = BATCH,
    widths=WIDTHS,
) -> dict:
    info = machine()
    x = make_batch(seed, batch)
    flops = step_flops(widths, batch)
    runners, notes = {}, {}
    runners["jax (dl engine)"], variables0, latents = jax_runner(x, seed=seed, widths=widths)
    make = functools.partial(torch_runner, x, variables0, latents, widths=widths)
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
    j = results["jax (dl engine)"]
    for name, res in results.items():
        if name.startswith("torch"):
            _cli.add_ratios(ratios, notes, "jax_over_" + _cli.torch_key(name), j, res)
    params = sum(
        np.size(v) for side in variables0.values() for v in jax.tree.leaves(side["params"])
    )
    return {
        "machine": {**info, "loadavg_1min_end": os.getloadavg()[0]},
        "config": {
            "batch": batch,
            "steps": steps,
            "repeats": repeats,
            "seed": seed,
            "widths": list(widths),
            "latent": LATENT,
            "lr": LR,
            "b1": B1,
        },
        "flops": flops,
        "results": results,
        "ratios": ratios,
        "notes": notes,
        "parity_max_abs_loss_diff": parity,
        "others_busy_fraction": others_busy(before, cpu_snapshot()),
        "param_count": int(params),
    }


def format_result(res: dict) -> str:
    m = res["machine"]
    head = _cli.machine_line(m)
    about = (
        f"DCGAN step (D then G), batch {res['config']['batch']}: {res['param_count']:,} params; "
        f"model FLOPs {res['flops']['model'] / 1e9:.3f} G/step; other processes kept "
        f"{res['others_busy_fraction']:.0%} of the CPUs busy; "
        + _cli.parity_text(res["parity_max_abs_loss_diff"], "warm-up steps (d and g)")
    )
    lines = [
        head,
        about,
        f"{'implementation':<18}{'steps/s':>9}{'images/s':>10}{'ms/step':>9}{'GFLOP/s':>9}",
    ]
    for name, s in res["results"].items():
        lines.append(
            f"{name:<18}{s['steps_per_s']:>9.2f}{s['images_per_s']:>10.0f}"
            f"{s['ms_per_step']:>9.1f}{s['gflops']:>9.1f}"
        )
    lines += _cli.ratio_lines(res["ratios"], width=44, goal="  goal >= 1.0", notes=res["notes"])
    lines += _cli.contention_warning(
        res["others_busy_fraction"],
        line="WARNING: other processes used over {:.0%} of the CPUs: contended",
    )
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = _cli.parser(__doc__, steps=10, repeats=7)
    parser.add_argument("--batch", type=int, default=BATCH, help="images per step (default 64)")
    parser.add_argument("--widths", type=int, nargs=4, default=list(WIDTHS), help="G0 G1 D0 D1")
    _cli.add_no_torch_compile(parser, help=None)
    args = parser.parse_args(argv)
    _cli.exact_matmuls()
    res = benchmark(
        steps=args.steps,
        repeats=args.repeats,
        torch_compile=args.torch_compile,
        batch=args.batch,
        widths=tuple(args.widths),
    )
    return _cli.finish(res, format_result(res), args.json)


if __name__ == "__main__":
    main()
