"""One 2-D convolution layer (5x5 kernel, 32 -> 64 channels, 28x28, padding 2, batch 128, with
bias): forward, forward + weight gradient, and forward + both gradients, in every impl of
`dl.ops.conv.conv` ("xla", "xla_split", "im2col", "im2col_vjp") side by side with PyTorch's
`torch.nn.functional.conv2d` (eager; `torch.compile` optional) in one process.

Run:    python -m benchmarks.conv [--steps N] [--repeats R] [--json PATH] [--shape NAME]
                                  [--torch-compile]
Expect: see BENCHMARKS.md ("conv") for the figures on the 2-core CPU.

`--shape` picks another layer from SHAPES (to see where a default holds); padding is always
k // 2 on each side ('SAME' for odd k at stride 1), as torch's padding=k // 2.

FLOPs: the forward is 2 N H' W' kh kw C O = 10.3 GFLOP at the default shape; each gradient
(dW, dX) is another GEMM of the same size, so "fwd_dw" is 2x and "fwd_grads" 3x that (bias and
the elementwise loss are under 0.1%). Those are the figures behind GFLOP/s and fraction of peak.

Method: the loss is <conv(x, w) + b, cot> for a fixed random cotangent (passed in as an
argument), so every gradient is a plain backward pass of the layer. Every implementation gets the same x, w, b and cot (NHWC/HWIO
for JAX, NCHW/OIHW copies for PyTorch); before timing, each one's output and gradients are
compared with PyTorch's (relative max-abs difference). A call is one jitted (or eager PyTorch)
evaluation, synced at the end of each repeat; repeats of all implementations are interleaved
(`benchmarks.mlp_step.time_runners`) so that background load hits all alike, and the median
repeat is reported, plus the median over the quiet repeats (other processes under 10% of the
CPUs) when there were any.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import _cli, matmul_peak
from benchmarks.mlp_step import (
    Runner,
    cpu_snapshot,
    machine,
    others_busy,
    speed_ratio,
    summarize,
    time_runners,
)
from dl.ops.conv import IMPLS, conv, resolve_impl

# The shape (LeNet-like second layer on MNIST), and others for where a default holds.
SHAPES = {
    "5x5_32to64_28": {"batch": 128, "size": 28, "in": 32, "out": 64, "kernel": 5, "stride": 1},
    "5x5_1to32_28": {"batch": 128, "size": 28, "in": 1, "out": 32, "kernel": 5, "stride": 1},
    "3x3_64to64_14": {"batch": 128, "size": 14, "in": 64, "out": 64, "kernel": 3, "stride": 1},
    "3x3_16to128_32": {"batch": 32, "size": 32, "in": 16, "out": 128, "kernel": 3, "stride": 1},
    "5x5_64to128_28_s2": {"batch": 64, "size": 28, "in": 64, "out": 128, "kernel": 5, "stride": 2},
}
SHAPE = SHAPES["5x5_32to64_28"]
MODES = ("fwd", "fwd_dw", "fwd_grads")
GEMMS = {"fwd": 1, "fwd_dw": 2, "fwd_grads": 3}  # GEMM-sized passes per mode


def out_size(shape: dict) -> int:
    """floor((size + 2 (k // 2) - k) / stride) + 1: ceil(size / stride) for odd k."""
    k = shape["kernel"]
    return (shape["size"] + 2 * (k // 2) - k) // shape.get("stride", 1) + 1


def conv_flops(shape: dict, mode: str) -> int:
    """2 N H' W' kh kw C O per GEMM-sized pass."""
    s, o = shape, out_size(shape)
    return 2 * s["batch"] * o**2 * s["kernel"] ** 2 * s["in"] * s["out"] * GEMMS[mode]


def make_inputs(shape: dict, seed: int = 0) -> dict[str, np.ndarray]:
    """x: [N, H, W, C] ~ N(0, 1); w: [k, k, C, O] and b: [O] ~ torch's default U(+-1/sqrt(fan_in));
    cot: [N, H', W', O] ~ N(0, 1), the output cotangent."""
    s, rng = shape, np.random.default_rng(seed)
    bound = 1 / np.sqrt(s["kernel"] ** 2 * s["in"])
    return {
        "x": rng.normal(size=(s["batch"], s["size"], s["size"], s["in"])).astype(np.float32),
        "w": rng.uniform(-bound, bound, (s["kernel"], s["kernel"], s["in"], s["out"])).astype(
            np.float32
        ),
        "b": rng.uniform(-bound, bound, s["out"]).astype(np.float32),
        "cot": rng.normal(size=(s["batch"], out_size(s), out_size(s), s["out"])).astype(np.float32),
    }


def jax_call(impl: str, mode: str, inputs: dict, stride: int = 1):
    """(call, outputs): call() dispatches one jitted evaluation (unsynced); outputs() gives the
    results as numpy, in PyTorch's order: y for "fwd", (y, dw, db) or (y, dx, dw, db)."""
    x, w, b, cot = (jax.device_put(inputs[k]) for k in ("x", "w", "b", "cot"))

    def forward(x, w, b):
        k = w.shape[0]  # explicit k // 2, like torch's padding=k // 2 (strided 'SAME' differs)
        return conv(x, w, strides=stride, padding=k // 2, impl=impl) + b

    if mode == "fwd":
        f = jax.jit(forward)
        call = functools.partial(f, x, w, b)
        return call, lambda: (np.asarray(call()),)

    def loss(x, w, b, cot):
        y = forward(x, w, b)
        return jnp.vdot(y, cot), y

    # cot is an argument, not a closed-over constant: XLA may lay a constant out to suit the
    # weight-gradient convolution, which a cotangent computed by the next layer never is.
    argnums = (1, 2) if mode == "fwd_dw" else (0, 1, 2)
    f = jax.jit(jax.grad(loss, argnums, has_aux=True))
    call = functools.partial(f, x, w, b, cot)

    def outputs():
        grads, y = call()
        return (np.asarray(y), *(np.asarray(g) for g in grads))

    return call, outputs


def torch_call(mode: str, inputs: dict, threads: int, compile_model: bool = False, stride: int = 1):
    """The same as `jax_call` with torch.nn.functional.conv2d on NCHW/OIHW copies; outputs are
    converted back to NHWC/HWIO."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    x = torch.from_numpy(inputs["x"].transpose(0, 3, 1, 2).copy())
    w = torch.from_numpy(inputs["w"].transpose(3, 2, 0, 1).copy())
    b = torch.from_numpy(inputs["b"].copy())
    cot = torch.from_numpy(inputs["cot"].transpose(0, 3, 1, 2).copy())
    pad = inputs["w"].shape[0] // 2

    def forward(x, w, b):
        return F.conv2d(x, w, b, stride=stride, padding=pad)

    fwd = torch.compile(forward) if compile_model else forward
    nhwc = lambda t: t.detach().numpy().transpose(0, 2, 3, 1)
    if mode == "fwd":

        def call():
            with torch.no_grad():
                return fwd(x, w, b)

        return call, lambda: (nhwc(call()),)

    def call():
        xs = x.detach().requires_grad_(mode == "fwd_grads")
        ws, bs = w.detach().requires_grad_(True), b.detach().requires_grad_(True)
        y = fwd(xs, ws, bs)
        (y * cot).sum().backward()
        grads = (xs.grad,) if mode == "fwd_grads" else ()
        return y, *grads, ws.grad, bs.grad

    def outputs():
        y, *grads, dw, db = call()
        dx = [nhwc(g) for g in grads]
        return (nhwc(y), *dx, dw.numpy().transpose(2, 3, 1, 0), db.numpy())

    return call, outputs


def relative_diff(got: tuple, want: tuple) -> float:
    """max over outputs of max|got - want| / max|want|."""
    return max(
        float(np.max(np.abs(g - w)) / max(np.max(np.abs(w)), 1e-30))
        for g, w in zip(got, want, strict=True)
    )


def benchmark(
    *,
    steps: int,
    repeats: int,
    shape: dict = SHAPE,
    torch_threads: int | None = None,
    torch_compile: bool = False,
    peak_sizes=(512, 1024),
    peak_repeats: int = 2,
    seed: int = 0,
) -> dict:
    """Runs every mode and implementation; returns the JSON-able result."""
    info = machine()
    threads = torch_threads or matmul_peak.xla_cpu_threads()
    have_torch = matmul_peak.torch_device() == "cpu"
    inputs = make_inputs(shape, seed)
    results, parity, ratios, notes = {}, {}, {}, {}
    snap = cpu_snapshot()
    for mode in MODES:
        stride = shape.get("stride", 1)
        calls = {impl: jax_call(impl, mode, inputs, stride) for impl in IMPLS}
        if have_torch:
            calls["torch"] = torch_call(mode, inputs, threads, stride=stride)
            if torch_compile:
                try:
                    calls["torch_compile"] = torch_call(
                        mode, inputs, threads, compile_model=True, stride=stride
                    )
                    calls["torch_compile"][1]()  # compiles here, not in the timing
                except Exception as e:  # noqa: BLE001 - a missing C++ toolchain etc.: report it
                    calls.pop("torch_compile")
                    notes["torch_compile"] = f"failed: {type(e).__name__}: {str(e)[:200]}"
        ref_name = "torch" if have_torch else "xla"
        ref = calls[ref_name][1]()
        parity[mode] = {name: relative_diff(out(), ref) for name, (_, out) in calls.items()}

        cpu_s: dict[str, list[float]] = {name: [] for name in calls}

        def runner(name, call, cpu_s=cpu_s):
            def run(n: int) -> None:
                t = os.times()
                for _ in range(n):
                    out = call()
                jax.block_until_ready(out)  # torch tensors pass through unchanged
                t2 = os.times()
                cpu_s[name].append(max(0.0, t2.user + t2.system - t.user - t.system))

            return Runner(run, [])

        for call, _ in calls.values():  # warm-up: compile, thread pools, allocator
            jax.block_until_ready(call())
        seconds, busy = time_runners(
            {name: runner(name, c) for name, (c, _) in calls.items()}, steps=steps, repeats=repeats
        )
        flops = conv_flops(shape, mode)
        fl = {"model": flops, "matmul_executed": flops, "elementwise": 0}
        results[mode] = {
            name: summarize(seconds[name], busy[name], steps=steps, flops=fl) for name in calls
        }
        for name, r in results[mode].items():
            # This process's CPU time per call: the work done, which contention inflates less
            # than wall time (it still counts cache misses and spinning threads).
            r["cpu_ms_per_call"] = 1e3 * statistics.median(cpu_s[name]) / steps
        for name, r in results[mode].items():
            print(format_row(mode, name, r, parity[mode][name]), flush=True)
        res = results[mode]
        pairs = [(impl, "xla") for impl in IMPLS if impl != "xla"]
        pairs += [(impl, den) for impl in IMPLS for den in res if den.startswith("torch")]
        for num, den in pairs:
            key = f"{num}_over_{den}_{mode}"
            ratios[key], _ = speed_ratio(res[num], res[den])
            ratios[key + "_quiet"], why = speed_ratio(res[num], res[den], quiet=True)
            if why:
                notes[key + "_quiet"] = f"null: {why}"
    snap_end = cpu_snapshot()
    peak = matmul_peak.measure_peak(peak_sizes, repeats=peak_repeats, seed=seed)
    for mode, res in results.items():
        for r in res.values():
            r["fraction_of_peak"] = r["gflops"] / peak["peak_gflops"]
    return {
        "machine": {
            **info,
            "loadavg_1min_end": os.getloadavg()[0],
            "others_busy_fraction": others_busy(snap, snap_end),
        },
        "config": {
            "shape": shape,
            "padding": "k // 2",
            "steps": steps,
            "repeats": repeats,
            "seed": seed,
            "torch_threads": threads,
        },
        "flops": {mode: conv_flops(shape, mode) for mode in MODES},
        "auto_picks": resolve_impl("auto"),
        "peak": peak,
        "results": results,
        "parity_relative_max_abs_diff": parity,
        "ratios": ratios,
        "notes": notes,
    }


def format_row(mode: str, name: str, r: dict, parity: float) -> str:
    quiet = r["quiet_steps_per_s"]
    quiet_ms = "-" if quiet is None else f"{1e3 / quiet:.1f}"
    best_ms = 1e3 / r["best_steps_per_s"]
    busy = max(r["others_busy"])
    return (
        f"{mode:<10}{name:<15}{r['ms_per_step']:>10.1f}{best_ms:>10.1f}{quiet_ms:>10}"
        f" ({r['quiet_repeats']}){r['cpu_ms_per_call']:>9.1f}{r['gflops']:>9.1f}{parity:>10.1e}"
        f"{busy:>8.0%}"
    )


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="calls per repeat")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats (median)")
    parser.add_argument("--json", default="", help="also write the result to this path")
    parser.add_argument("--shape", default="5x5_32to64_28", choices=sorted(SHAPES))
    parser.add_argument("--batch", type=int, default=None, help="override the shape's batch")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="PyTorch intra-op threads (default: as many as XLA uses)",
    )
    parser.add_argument(
        "--torch-compile", action="store_true", help="also time torch.compile (slow to compile)"
    )
    parser.add_argument(
        "--peak-sizes", type=int, nargs="+", default=[512, 1024], help="matmul peak sizes"
    )
    parser.add_argument("--peak-repeats", type=int, default=2)
    args = parser.parse_args(argv)
    _cli.exact_matmuls()
    m = machine()
    print(
        f"{m['cpu']}, {m['xla_cpu_threads']} threads, JAX backend {m['jax_backend']}, "
        f"load {m['loadavg_1min_start']:.1f}"
    )
    print(
        f"{'mode':<10}{'impl':<15}{'ms':>10}{'best ms':>10}{'quiet ms':>10} (n){'cpu ms':>9}"
        f"{'GFLOP/s':>9}{'parity':>10}{'busy':>8}"
    )
    res = benchmark(
        steps=args.steps,
        repeats=args.repeats,
        shape={**SHAPES[args.shape], **({"batch": args.batch} if args.batch else {})},
        torch_threads=args.torch_threads,
        torch_compile=args.torch_compile,
        peak_sizes=args.peak_sizes,
        peak_repeats=args.peak_repeats,
    )
    print(f"dl.ops.conv's impl='auto' picks {res['auto_picks']!r} for this layer")
    for k, v in res["ratios"].items():
        if not k.endswith("_quiet"):
            print(f"{k:<36}{'null' if v is None else f'{v:.3f}':>8}  (> 1: the first is faster)")
    nulls = [k for k, v in res["ratios"].items() if v is None]
    if nulls:
        print(f"{len(nulls)} quiet ratios are null: no repeat was quiet (see 'notes' in the JSON)")
    for k, v in res["notes"].items():
        if not k.endswith("_quiet"):
            print(f"note: {k}: {v}")
    busy = res["machine"]["others_busy_fraction"]
    peak = (
        f"matmul peak {res['peak']['peak_gflops']:.1f} GFLOP/s; other processes kept {busy:.0%} "
        f"of the CPUs busy; load {res['machine']['loadavg_1min_start']:.1f} -> "
        f"{res['machine']['loadavg_1min_end']:.1f}"
    )
    lines = [peak]
    lines += _cli.contention_warning(busy, line=_cli.BUSY_ELSEWHERE)
    return _cli.finish(res, "\n".join(lines), args.json)


if __name__ == "__main__":
    main()
