"""One MLP train step (784-1000-500-10, ReLU, batch 256, SGD + momentum 0.9, cross-entropy), timed
with dl's engine in JAX side by side with the same model and batch in PyTorch, and against the
machine's measured fp32 matmul peak (`benchmarks.matmul_peak`).

Run:    python -m benchmarks.mlp_step [--steps N] [--repeats R] [--json PATH]
Expect: see BENCHMARKS.md for the figures on the 2-core CPU and what limits them.

FLOPs per step, analytically (B = batch, widths d_0..d_L, P = number of parameters):
  matmuls   forward 2 B sum_l d_{l-1} d_l; backward twice that (dW_l and dX_l per layer), so
            6 B sum_l d_{l-1} d_l in all -- the "6 x parameters x examples" convention, used for
            the GFLOP/s and fraction-of-peak figures. Neither framework forms the first layer's
            input gradient dX_1, so the matmuls actually executed are 2 B d_0 d_1 fewer.
  elementwise  bias add and bias gradient 2 B sum_l d_l; ReLU and its gradient 2 B sum of hidden
            widths; softmax cross-entropy and its gradient about 5 B d_L; SGD with momentum
            (v = mu v + g; p = p - lr v) 4 P. Under 0.5% of the matmuls here.

Method: both sides start from the same parameters (JAX's initialization copied into PyTorch) and
train on the same batch, already on the device. A few warm-up steps compile each side and check
that their losses agree (so the two really compute the same thing). Then every implementation
runs `--steps` steps per repeat, repeats interleaved so that background load hits all alike; the
JAX loop never syncs inside, only `jax.block_until_ready(state)` at the end. Steps/s is from the
median repeat.
"""

from __future__ import annotations

import functools
import itertools
import os
import platform
import statistics
import time
from collections.abc import Callable

import jax
import numpy as np
import optax

from benchmarks import _cli, matmul_peak
from benchmarks._cli import CONTENDED, WARMUP_STEPS, Runner, speed_ratio  # noqa: F401 (re-exported)
from dl.nn.mlp import MLP
from dl.objectives.classification import classifier_loss
from dl.train.step import jit_train_step
from dl.train.supervised import init_state

WIDTHS = (784, 1000, 500, 10)  # d_0 (MNIST pixels) .. d_L (classes)
BATCH = 256
MOMENTUM = 0.9
LEARNING_RATE = 0.01


def step_flops(widths=WIDTHS, batch: int = BATCH) -> dict[str, int]:
    """FLOPs of one train step, by the formulas of the module docstring.

    Returns {"model": 6 B sum d_{l-1} d_l, "matmul_executed": model - 2 B d_0 d_1,
    "elementwise": the elementwise estimate, "params": P}.
    """
    pairs = list(itertools.pairwise(widths))
    macs = sum(i * o for i, o in pairs)
    params = sum(i * o + o for i, o in pairs)
    hidden = sum(widths[1:-1])
    elementwise = batch * (2 * sum(widths[1:]) + 2 * hidden + 5 * widths[-1]) + 4 * params
    model = 6 * batch * macs
    return {
        "model": model,
        "matmul_executed": model - 2 * batch * widths[0] * widths[1],
        "elementwise": elementwise,
        "params": params,
    }


def make_batch(seed: int, widths=WIDTHS, batch: int = BATCH) -> tuple[np.ndarray, np.ndarray]:
    """x: [batch, d_0] float32 in [0, 1) (like pixels); y: [batch] int32 labels in [0, d_L)."""
    rng = np.random.default_rng(seed)
    x = rng.random((batch, widths[0]), dtype=np.float32)
    y = rng.integers(0, widths[-1], size=batch).astype(np.int32)
    return x, y


def mlp_model(widths=WIDTHS) -> MLP:
    return MLP(hidden=tuple(widths[1:-1]), out=widths[-1], activation="relu")


def jax_runner(
    x: np.ndarray, y: np.ndarray, *, seed: int, lr: float, widths=WIDTHS
) -> tuple[Runner, dict, Callable[[], dict]]:
    """dl's engine: `init_state`, `classifier_loss`, `optax.sgd(lr, momentum)` and the jitted,
    donated `jit_train_step`. Also returns the initial parameters (host numpy, for PyTorch) and a
    function giving XLA's own cost analysis of the compiled step."""
    model = mlp_model(widths)
    state = init_state(model, optax.sgd(lr, momentum=MOMENTUM), x[:1], seed=seed)
    params0 = jax.tree.map(np.array, jax.device_get(state.params))
    step = jit_train_step(classifier_loss(model))
    batch = jax.device_put({"x": x, "y": y, "mask": np.ones(len(y), np.float32)})

    def cost_analysis() -> dict:
        return step.lower(state, batch).compile().cost_analysis() or {}

    cost = cost_analysis()  # before donation consumes `state`
    return _cli.jax_train_runner(step, state, batch), params0, lambda: cost


def torch_runner(
    x: np.ndarray,
    y: np.ndarray,
    params0: dict,
    *,
    lr: float,
    device: str,
    compile_model: bool = False,
) -> Runner:
    """The same network as torch.nn.Sequential, with JAX's initial parameters copied in (flax
    kernels are [in, out], torch weights [out, in]); torch.optim.SGD with momentum matches
    optax.sgd's trace (v = mu v + g, p -= lr v). `compile_model` wraps model + loss in
    torch.compile (the optimizer step stays eager)."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(matmul_peak.xla_cpu_threads())
    names = [k for k in params0 if k.startswith("dense_")] + ["head"]
    layers: list[torch.nn.Module] = []
    for i, name in enumerate(names):
        kernel, bias = params0[name]["kernel"], params0[name]["bias"]
        linear = torch.nn.Linear(*kernel.shape)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel.T)))
            linear.bias.copy_(torch.from_numpy(bias))
        layers += [linear] if i == len(names) - 1 else [linear, torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=MOMENTUM)
    xt = torch.from_numpy(x).to(device)
    yt = torch.from_numpy(y).long().to(device)  # torch's cross_entropy wants int64 labels

    def forward() -> torch.Tensor:
        return F.cross_entropy(model(xt), yt)

    loss_of = torch.compile(forward) if compile_model else forward

    def one_step() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        loss = loss_of()
        loss.backward()
        opt.step()
        return loss

    return _cli.torch_train_runner(one_step, device)


def machine() -> dict:
    """What the figures were measured on."""
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(
                (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu
            )
    except OSError:
        pass
    versions = {"python": platform.python_version()}
    for mod in ("jax", "jaxlib", "flax", "optax", "numpy", "torch"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            versions[mod] = None
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "xla_cpu_threads": matmul_peak.xla_cpu_threads(),
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(d) for d in jax.devices()],
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "versions": versions,
        "jax_matmul_precision": str(jax.config.jax_default_matmul_precision),
        "loadavg_1min_start": os.getloadavg()[0],
    }


def cpu_snapshot() -> tuple[float, float, float] | None:
    """(wall s, whole-machine busy CPU s, this process's CPU s), or None off Linux. Two snapshots
    give the CPU time *other* processes used in between: the benchmark's contention, which the
    load average (a lagging one-minute mean) only hints at."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except OSError:
        return None
    busy = sum(fields) - fields[3] - fields[4]  # all but idle and iowait
    own = os.times()
    return time.perf_counter(), busy / os.sysconf("SC_CLK_TCK"), own.user + own.system


def others_busy(before, after) -> float:
    """Fraction of the machine's CPUs busy with other processes between two `cpu_snapshot`s
    (0: we had the machine to ourselves; 1: every CPU was busy with someone else). Clipped to
    [0, 1]: the CPU times count whole clock ticks (10 ms), so over a short window a busy
    machine can read a little above 1."""
    if before is None or after is None:
        return float("nan")
    wall = after[0] - before[0]
    others = max(0.0, (after[1] - before[1]) - (after[2] - before[2])) / (wall * os.cpu_count())
    return min(1.0, others)


def time_runners(
    runners: dict[str, Runner], *, steps: int, repeats: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Seconds for `steps` steps and the other processes' CPU share meanwhile (`others_busy`),
    per implementation and repeat, with repeats interleaved."""
    seconds: dict[str, list[float]] = {name: [] for name in runners}
    busy: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, runner in runners.items():
            before = cpu_snapshot()
            t0 = time.perf_counter()
            runner.run(steps)
            seconds[name].append(time.perf_counter() - t0)
            busy[name].append(others_busy(before, cpu_snapshot()))
    return seconds, busy


def summarize(seconds: list[float], busy: list[float], *, steps: int, flops: dict) -> dict:
    """Steps/s from the median repeat (all repeats, and only the quiet ones: those during which
    other processes kept under CONTENDED of the CPUs busy), the best repeat, and GFLOP/s.

    The quiet figures ("quiet_steps_per_s", "quiet_gflops") are None when no repeat was quiet:
    there is nothing to take a median of, and a NaN would pass silently into ratios and JSON.
    """
    quiet = [s for s, b in zip(seconds, busy, strict=True) if not b > CONTENDED]
    sps = steps / statistics.median(seconds)
    quiet_sps = steps / statistics.median(quiet) if quiet else None
    return {
        "seconds": seconds,
        "others_busy": busy,
        "steps_per_s": sps,
        "quiet_steps_per_s": quiet_sps,
        "quiet_repeats": len(quiet),
        "best_steps_per_s": steps / min(seconds),
        "ms_per_step": 1e3 / sps,
        "gflops": sps * flops["model"] / 1e9,
        "quiet_gflops": None if quiet_sps is None else quiet_sps * flops["model"] / 1e9,
        "executed_gflops": sps * (flops["matmul_executed"] + flops["elementwise"]) / 1e9,
    }


def benchmark(
    *,
    steps: int,
    repeats: int,
    peak_sizes,
    peak_repeats: int,
    torch_compile: bool,
    seed: int = 0,
    lr: float = LEARNING_RATE,
) -> dict:
    """Runs everything; returns the JSON-able result (see `format_result` for the table)."""
    info = machine()
    flops = step_flops()
    x, y = make_batch(seed)
    jax_run, params0, xla_cost = jax_runner(x, y, seed=seed, lr=lr)
    runners = {"jax (dl engine)": jax_run}
    notes: dict[str, str] = {}
    make = functools.partial(torch_runner, x, y, params0, lr=lr)
    _cli.add_torch_runners(runners, notes, make, torch_compile)
    snap = cpu_snapshot()
    seconds, busy = time_runners(runners, steps=steps, repeats=repeats)
    snap_steps = cpu_snapshot()
    peak = matmul_peak.measure_peak(peak_sizes, repeats=peak_repeats, seed=seed)
    contention = {
        "steps": others_busy(snap, snap_steps),
        "peak": others_busy(snap_steps, cpu_snapshot()),
    }
    results = {}
    for name, runner in runners.items():
        results[name] = summarize(seconds[name], busy[name], steps=steps, flops=flops)
        results[name]["fraction_of_peak"] = results[name]["gflops"] / peak["peak_gflops"]
        results[name]["warmup_losses"] = runner.warmup_losses
    jax_res = results["jax (dl engine)"]
    quiet_gflops = jax_res["quiet_gflops"]
    ratios = {
        "jax_over_peak": jax_res["fraction_of_peak"],
        "jax_quiet_over_peak": None if quiet_gflops is None else quiet_gflops / peak["peak_gflops"],
        "jax_executed_over_peak": jax_res["executed_gflops"] / peak["peak_gflops"],
    }
    if quiet_gflops is None:
        notes["jax_quiet_over_peak"] = (
            f"null: no quiet repeat of the JAX step (other processes kept over {CONTENDED:.0%} "
            "of the CPUs busy in every one)"
        )
    for name, res in results.items():
        if name.startswith("torch"):
            _cli.add_ratios(ratios, notes, f"jax_over_{_cli.torch_key(name)}", jax_res, res)
    losses = np.array([r["warmup_losses"] for r in results.values()])
    xla = xla_cost()
    return {
        "machine": {
            **info,
            "loadavg_1min_end": os.getloadavg()[0],
            "others_busy_fraction": contention,
        },
        "config": {
            "widths": WIDTHS,
            "batch": BATCH,
            "lr": lr,
            "momentum": MOMENTUM,
            "steps": steps,
            "repeats": repeats,
            "seed": seed,
        },
        "flops": {**flops, "xla_cost_analysis": float(xla.get("flops", float("nan")))},
        "peak": peak,
        "results": results,
        "ratios": ratios,
        "notes": notes,
        "parity_max_abs_loss_diff": float(np.max(np.abs(losses - losses[0]))),
    }


def format_result(res: dict) -> str:
    m, f, peak = res["machine"], res["flops"], res["peak"]
    busy = m["others_busy_fraction"]
    machine_line = (
        f"{_cli.machine_line(m)}; other processes kept {busy['steps']:.0%} of the CPUs busy "
        f"while timing steps, {busy['peak']:.0%} during the peak"
    )
    flops_line = (
        f"step FLOPs: model 6*B*sum(in*out) = {f['model'] / 1e9:.3f} G; executed matmuls "
        f"{f['matmul_executed'] / 1e9:.3f} G; elementwise ~{f['elementwise'] / 1e6:.1f} M; "
        f"XLA cost analysis {f['xla_cost_analysis'] / 1e9:.3f} G"
    )
    peak_line = f"fp32 matmul peak {peak['peak_gflops']:.1f} GFLOP/s ({peak['peak_library']}); "
    peak_line += ", ".join(f"{k} {v:.1f}" for k, v in peak["best_by_library"].items())
    parity_line = _cli.parity_text(res["parity_max_abs_loss_diff"])
    header = (
        f"{'implementation':<18}{'steps/s':>9}{'ms/step':>9}{'GFLOP/s':>9}{'of peak':>9}"
        f"{'quiet steps/s':>15}{'best steps/s':>14}{'min..max ms/step':>20}"
    )
    lines = [machine_line, flops_line, peak_line, parity_line, "", header]
    steps = res["config"]["steps"]
    for name, r in res["results"].items():
        lo, hi = (1e3 * s / steps for s in (min(r["seconds"]), max(r["seconds"])))
        quiet_sps = r["quiet_steps_per_s"]
        quiet = f"{'-' if quiet_sps is None else f'{quiet_sps:.2f}'} ({r['quiet_repeats']})"
        lines.append(
            f"{name:<18}{r['steps_per_s']:>9.2f}{r['ms_per_step']:>9.2f}{r['gflops']:>9.1f}"
            f"{r['fraction_of_peak']:>9.2f}"
            f"{quiet:>15}"
            f"{r['best_steps_per_s']:>14.2f}{f'{lo:.2f}..{hi:.2f}':>20}"
        )
    lines.append("")
    lines += _cli.ratio_lines(res["ratios"], width=34, goal=_goal, notes=res["notes"])
    lines += _cli.contention_warning(
        *busy.values(),
        line=_cli.CONTENDED_LINE
        + " (PyTorch's spinning OpenMP threads suffer most); rerun when idle",
    )
    return "\n".join(lines)


def _goal(key: str) -> str:
    goal = ">= 0.85" if key in ("jax_over_peak", "jax_quiet_over_peak") else ""
    goal = ">= 1.0" if "_over_torch" in key else goal
    return f"  goal {goal}" if goal else "  "


def main(argv=None) -> dict:
    parser = _cli.parser(
        __doc__,
        steps=25,
        repeats=20,
        repeats_help="repeats; the median is reported (short repeats, "
        "many of them, so that some fall in quiet moments on a shared machine)",
    )
    parser.add_argument(
        "--peak-sizes",
        type=int,
        nargs="+",
        default=list(matmul_peak.DEFAULT_SIZES),
        help="square sizes for the matmul peak",
    )
    parser.add_argument("--peak-repeats", type=int, default=3)
    _cli.add_no_torch_compile(parser)
    args = parser.parse_args(argv)
    _cli.exact_matmuls()
    res = benchmark(
        steps=args.steps,
        repeats=args.repeats,
        peak_sizes=args.peak_sizes,
        peak_repeats=args.peak_repeats,
        torch_compile=args.torch_compile,
    )
    return _cli.finish(res, format_result(res), args.json)


if __name__ == "__main__":
    main()
