"""One Adam train step of the MNIST benchmark CNN (`dl.models.cnn.MnistCNN`: conv 5x5 32, pool,
conv 5x5 64, pool, dense 1024, 10) and of LeNet-5, input 28x28x1, batch 128, cross-entropy, timed
through dl's engine (`jit_train_step`) with each conv impl ("xla", "im2col", "im2col_vjp";
`dl.ops.conv`) side by side with the same model, weights and batch in PyTorch (eager and
`torch.compile`), in one process.

Run:    python -m benchmarks.cnn_step [--steps N] [--repeats R] [--json PATH] [--models ...]
                                      [--impls ...] [--no-torch-compile]
Expect: see BENCHMARKS.md ("cnn_step") for the figures on the 2-core CPU.

FLOPs per step (B = batch): the model-FLOPs convention, 6 B x (multiply-adds of one forward
pass), over the convolutions (H' W' kh kw C O each) and dense layers (in x out); forward 2 B M,
backward twice that. Neither framework forms the first convolution's input gradient, so the
executed figure is 2 B M_1 fewer. Pooling, activations and Adam are not counted (about 1%).

Method: as `benchmarks.mlp_step`: JAX's initial parameters are copied into PyTorch (HWIO conv
kernels to OIHW; MnistCNN's first dense kernel has its rows reordered from flax's H, W, C
flattening to torch's C, H, W), both sides train on the same batch, already on the device, with
the same Adam (lr 1e-3, b1 0.9, b2 0.999, eps 1e-8 outside the root: `dl.optim.adam` and
`torch.optim.Adam`), and the first WARMUP_STEPS losses of every implementation are compared
before anything is timed. Repeats of all implementations are interleaved
(`mlp_step.time_runners`); steps/s is from the median repeat, and from the quiet repeats (other
processes under 10% of the CPUs) when there were any.
"""

from __future__ import annotations

import functools
import os

import jax
import numpy as np

from benchmarks import _cli, matmul_peak
from benchmarks.mlp_step import (
    Runner,
    cpu_snapshot,
    machine,
    others_busy,
    summarize,
    time_runners,
)
from dl import optim
from dl.models.cnn import LeNet5, MnistCNN
from dl.objectives.classification import classifier_loss
from dl.ops.conv import IMPLS
from dl.train.step import jit_train_step
from dl.train.supervised import init_state

BATCH = 128
LEARNING_RATE = 1e-3
MODELS = ("mnist_cnn", "lenet5")
DEFAULT_IMPL = MnistCNN.conv_impl  # what dl.nn.conv.Conv uses unless told otherwise


def build(name: str, impl: str = DEFAULT_IMPL):
    return {"mnist_cnn": MnistCNN, "lenet5": LeNet5}[name](conv_impl=impl)


def forward_macs(name: str) -> list[int]:
    """Multiply-adds of one example's forward pass, per conv/dense layer (module docstring)."""
    if name == "mnist_cnn":  # 'SAME' 5x5 convs at 28x28 and 14x14, then 3136 -> 1024 -> 10
        return [28 * 28 * 25 * 1 * 32, 14 * 14 * 25 * 32 * 64, 7 * 7 * 64 * 1024, 1024 * 10]
    # LeNet-5: C1 on the padded 32x32 (28x28 out), C3 (10x10 out), C5 (1x1 out), F6, output
    return [28 * 28 * 25 * 6, 10 * 10 * 25 * 6 * 16, 25 * 16 * 120, 120 * 84, 84 * 10]


def step_flops(name: str, batch: int = BATCH) -> dict[str, int]:
    macs = forward_macs(name)
    model = 6 * batch * sum(macs)
    return {
        "model": model,
        "matmul_executed": model - 2 * batch * macs[0],
        "elementwise": 0,  # not counted (module docstring)
        "forward_macs_per_example": sum(macs),
    }


def make_batch(seed: int, batch: int = BATCH) -> tuple[np.ndarray, np.ndarray]:
    """x: [batch, 28, 28, 1] float32 in [0, 1) (like pixels); y: [batch] int32 in [0, 10)."""
    rng = np.random.default_rng(seed)
    return (
        rng.random((batch, 28, 28, 1), dtype=np.float32),
        rng.integers(0, 10, size=batch).astype(np.int32),
    )


def jax_runner(name: str, impl: str, x, y, *, seed: int, lr: float) -> tuple[Runner, dict]:
    """dl's engine: `init_state`, `classifier_loss`, `dl.optim.adam` and the jitted, donated
    `jit_train_step`. Also returns the initial parameters (host numpy, for PyTorch)."""
    model = build(name, impl)
    state = init_state(model, optim.adam(lr), x[:1], seed=seed)
    params0 = jax.tree.map(np.array, jax.device_get(state.params))
    step = jit_train_step(classifier_loss(model))
    batch = jax.device_put({"x": x, "y": y, "mask": np.ones(len(y), np.float32)})
    return _cli.jax_train_runner(step, state, batch), params0


def torch_model(name: str, params0: dict):
    """The same network in torch (NCHW), with `params0` (flax, NHWC/HWIO) copied in."""
    import torch
    from torch import nn

    def conv(p, pad=0):
        k = p["kernel"]  # [kh, kw, C, O] -> [O, C, kh, kw]
        m = nn.Conv2d(k.shape[2], k.shape[3], k.shape[0], padding=pad)
        with torch.no_grad():
            m.weight.copy_(torch.from_numpy(np.ascontiguousarray(k.transpose(3, 2, 0, 1))))
            m.bias.copy_(torch.from_numpy(p["bias"]))
        return m

    def dense(p, kernel=None):
        k = p["kernel"] if kernel is None else kernel
        m = nn.Linear(*k.shape)
        with torch.no_grad():
            m.weight.copy_(torch.from_numpy(np.ascontiguousarray(k.T)))
            m.bias.copy_(torch.from_numpy(p["bias"]))
        return m

    class ScaledTanh(nn.Module):
        def forward(self, x):
            return 1.7159 * torch.tanh(x * (2.0 / 3.0))

    class PaperInput(nn.Module):  # LeNet5.paper_input: background -0.1, ink 1.175
        def forward(self, x):
            return x * (1.175 + 0.1) - 0.1

    p = params0
    if name == "mnist_cnn":
        k = p["dense"]["kernel"]  # rows in flax's (h, w, c) order -> torch's (c, h, w)
        k = k.reshape(7, 7, 64, -1).transpose(2, 0, 1, 3).reshape(7 * 7 * 64, -1)
        layers = [conv(p["conv_0"], 2), nn.ReLU(), nn.MaxPool2d(2)]
        layers += [conv(p["conv_1"], 2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten()]
        layers += [dense(p["dense"], k), nn.ReLU(), dense(p["head"])]
    else:
        layers = [PaperInput(), nn.ConstantPad2d(2, -0.1), conv(p["c1"]), ScaledTanh()]
        layers += [nn.AvgPool2d(2)]
        layers += [conv(p["c3"]), ScaledTanh(), nn.AvgPool2d(2), conv(p["c5"]), ScaledTanh()]
        layers += [nn.Flatten(), dense(p["f6"]), ScaledTanh(), dense(p["output"])]
    return nn.Sequential(*layers)


def torch_runner(
    name: str, x, y, params0: dict, *, lr: float, device: str, compile_model: bool = False
) -> Runner:
    """torch.optim.Adam on the copied model; `compile_model` wraps model + loss in
    torch.compile (the optimizer step stays eager), as `mlp_step.torch_runner`."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(matmul_peak.xla_cpu_threads())
    model = torch_model(name, params0).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(device)
    yt = torch.from_numpy(y).long().to(device)

    def forward():
        return F.cross_entropy(model(xt), yt)

    loss_of = torch.compile(forward) if compile_model else forward

    def one_step():
        opt.zero_grad(set_to_none=True)
        loss = loss_of()
        loss.backward()
        opt.step()
        return loss

    return _cli.torch_train_runner(one_step, device)


def jax_name(impl: str) -> str:
    return f"jax {impl}"


def ratio_key(jax_impl: str, torch_name: str) -> str:
    """jax_over_torch_eager for the default impl; jax_im2col_over_torch_eager etc. otherwise."""
    side = "jax" if jax_impl == DEFAULT_IMPL else f"jax_{jax_impl}"
    return f"{side}_over_{_cli.torch_key(torch_name)}"


def bench_model(name, *, impls, steps, repeats, torch_compile, seed, lr, batch=BATCH) -> dict:
    x, y = make_batch(seed, batch)
    flops = step_flops(name, batch)
    runners, notes, params0 = {}, {}, None
    for impl in impls:
        runners[jax_name(impl)], params0 = jax_runner(name, impl, x, y, seed=seed, lr=lr)
    make = functools.partial(torch_runner, name, x, y, params0, lr=lr)
    _cli.add_torch_runners(runners, notes, make, torch_compile)
    parity = _cli.loss_parity(runners)
    before = cpu_snapshot()
    seconds, busy = time_runners(runners, steps=steps, repeats=repeats)
    results = {}
    for rname, runner in runners.items():
        results[rname] = summarize(seconds[rname], busy[rname], steps=steps, flops=flops)
        results[rname]["images_per_s"] = results[rname]["steps_per_s"] * batch
        results[rname]["warmup_losses"] = runner.warmup_losses
    ratios = {}
    for impl in impls:
        j = results[jax_name(impl)]
        for rname, res in results.items():
            if rname.startswith("torch"):
                _cli.add_ratios(ratios, notes, ratio_key(impl, rname), j, res)
    return {
        "flops": flops,
        "results": results,
        "ratios": ratios,
        "notes": notes,
        "parity_max_abs_loss_diff": parity,
        "others_busy_fraction": others_busy(before, cpu_snapshot()),
        "param_count": int(sum(np.size(v) for v in jax.tree.leaves(params0))),
    }


def benchmark(
    *,
    steps: int,
    repeats: int,
    models=MODELS,
    impls=IMPLS,
    torch_compile: bool = True,
    seed: int = 0,
    lr: float = LEARNING_RATE,
    peak_sizes=(),
    peak_repeats: int = 3,
    batch: int = BATCH,
) -> dict:
    """Runs everything; the JSON-able result. Top-level `ratios` are `{model}_{key}`."""
    info = machine()
    per_model = {
        m: bench_model(
            m,
            impls=impls,
            steps=steps,
            repeats=repeats,
            torch_compile=torch_compile,
            seed=seed,
            lr=lr,
            batch=batch,
        )
        for m in models
    }
    peak = (
        matmul_peak.measure_peak(peak_sizes, repeats=peak_repeats, seed=seed)
        if peak_sizes
        else None
    )
    for res in per_model.values():
        for r in res["results"].values():
            r["fraction_of_peak"] = None if peak is None else r["gflops"] / peak["peak_gflops"]
    return {
        "machine": {**info, "loadavg_1min_end": os.getloadavg()[0]},
        "config": {
            "batch": batch,
            "lr": lr,
            "steps": steps,
            "repeats": repeats,
            "seed": seed,
            "models": list(models),
            "impls": list(impls),
        },
        "models": per_model,
        "peak": peak,
        "ratios": {f"{m}_{k}": v for m, res in per_model.items() for k, v in res["ratios"].items()},
        "parity_max_abs_loss_diff": max(r["parity_max_abs_loss_diff"] for r in per_model.values()),
    }


def format_result(res: dict) -> str:
    m = res["machine"]
    lines = [_cli.machine_line(m)]
    if res["peak"]:
        lines.append(f"fp32 matmul peak {res['peak']['peak_gflops']:.1f} GFLOP/s")
    steps = res["config"]["steps"]
    for name, r in res["models"].items():
        gflop = r["flops"]["model"] / 1e9
        about = f"{name}: {r['param_count']:,} params; model FLOPs {gflop:.3f} G/step; other "
        about += f"processes kept {r['others_busy_fraction']:.0%} of the CPUs busy; "
        about += _cli.parity_text(r["parity_max_abs_loss_diff"])
        header = f"{'implementation':<18}{'steps/s':>9}{'images/s':>10}{'ms/step':>9}"
        header += f"{'GFLOP/s':>9}{'quiet steps/s':>15}{'min..max ms/step':>20}"
        lines += ["", about, header]
        for rname, s in r["results"].items():
            lo, hi = (1e3 * t / steps for t in (min(s["seconds"]), max(s["seconds"])))
            q = s["quiet_steps_per_s"]
            quiet = f"{'-' if q is None else f'{q:.2f}'} ({s['quiet_repeats']})"
            lines.append(
                f"{rname:<18}{s['steps_per_s']:>9.2f}{s['images_per_s']:>10.0f}"
                f"{s['ms_per_step']:>9.1f}{s['gflops']:>9.1f}{quiet:>15}{f'{lo:.0f}..{hi:.0f}':>20}"
            )
        lines += _cli.ratio_lines(r["ratios"], width=44, goal="  goal >= 1.0", notes=r["notes"])
    lines += _cli.contention_warning(*(r["others_busy_fraction"] for r in res["models"].values()))
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = _cli.parser(__doc__, steps=10, repeats=7)
    parser.add_argument("--batch", type=int, default=BATCH, help="images per step (default 128)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--impls", nargs="+", default=list(IMPLS), choices=IMPLS)
    parser.add_argument(
        "--peak-sizes",
        type=int,
        nargs="*",
        default=[],
        help="square sizes for the matmul peak (default: none, to keep the run short)",
    )
    parser.add_argument("--peak-repeats", type=int, default=3)
    _cli.add_no_torch_compile(parser)
    args = parser.parse_args(argv)
    _cli.exact_matmuls()
    res = benchmark(
        steps=args.steps,
        repeats=args.repeats,
        models=tuple(args.models),
        impls=tuple(args.impls),
        torch_compile=args.torch_compile,
        peak_sizes=tuple(args.peak_sizes),
        peak_repeats=args.peak_repeats,
        batch=args.batch,
    )
    return _cli.finish(res, format_result(res), args.json)


if __name__ == "__main__":
    main()
