"""Sparsemax and the sparsemax loss, forward + backward on [B, K] logits: dl's jitted JAX (the
threshold by the sort of Alg. 1, by the sort-free fixed point, and by the default "auto") side by
side with PyTorch's sort-based sparsemax written the standard way (the entmax package's algorithm).

Run:    python -m benchmarks.sparsemax [--repeats R] [--json PATH]
Expect: see BENCHMARKS.md ("sparsemax") for the figures on the 2-core CPU.

One call is forward + backward: for sparsemax, the gradient of sum(w * sparsemax(z)) for fixed
random w; for the loss, the gradient of the mean sparsemax loss against soft targets q. PyTorch
uses entmax's sparsemax: sort descending, cumsum, support size = #{k : k z_(k) > cumsum_k - 1},
tau = (cumsum at the support size - 1) / size, with its closed-form backward (g on the support
minus its mean there); the loss's backward is sparsemax(z) - q. Every implementation gets the
same inputs; their outputs and gradients are checked against JAX's sort path before timing. Repeats
are interleaved (`benchmarks.mlp_step.time_runners`) and the median is reported, with the other
processes' CPU share measured meanwhile (`benchmarks.mlp_step.others_busy`).
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
from benchmarks.mlp_step import Runner, cpu_snapshot, machine, others_busy, time_runners
from dl.ops.sparsemax import FIXED_POINT_MAX_K, FIXED_POINT_MAX_PASSES, sparsemax, sparsemax_loss

# (K, B): the batch shrinks for large K so that one call stays in the tens of milliseconds.
SHAPES = ((10, 1024), (50, 1024), (1000, 1024), (30000, 64))
OPS = ("sparsemax", "sparsemax_loss")
JAX_METHODS = ("sort", "fixed_point", "auto")
TARGET_CALL_S = 0.1  # calls per repeat are chosen so that a repeat takes about this long


def make_inputs(k: int, b: int, seed: int = 0) -> dict[str, np.ndarray]:
    """z: [b, k] logits ~ N(0, 2^2) (supports of a few to a few dozen entries); w: [b, k] the
    cotangent for sparsemax; q: [b, k] soft targets (sparse Dirichlet draws)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=2.0, size=(b, k)).astype(np.float32)
    w = rng.normal(size=(b, k)).astype(np.float32)
    q = rng.dirichlet(np.full(k, 0.1), size=b).astype(np.float32)
    return {"z": z, "w": w, "q": q}


def jax_call(op: str, method: str, inputs: dict) -> tuple[callable, callable]:
    """(call, parity): call() dispatches one jitted forward + backward and returns its outputs
    (unsynced); parity() gives (value, gradient) as numpy."""
    z, w, q = (jax.device_put(inputs[k]) for k in ("z", "w", "q"))
    if op == "sparsemax":
        f = jax.jit(jax.value_and_grad(lambda z, w: jnp.sum(w * sparsemax(z, method=method))))
        args = (z, w)
    else:
        f = jax.jit(
            jax.value_and_grad(lambda z, q: sparsemax_loss(logits=z, targets=q, method=method), 0)
        )
        args = (z, q)
    call = functools.partial(f, *args)
    return call, lambda: tuple(np.asarray(a) for a in call())


def torch_call(op: str, inputs: dict, threads: int) -> tuple[callable, callable]:
    """The same as `jax_call` in eager PyTorch with entmax's sort-based sparsemax, on `threads`
    intra-op threads."""
    import torch

    torch.set_num_threads(threads)

    def threshold(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # entmax's _sparsemax_threshold_and_support: tau [B, 1] and the support size [B, 1].
        srt, _ = torch.sort(z, dim=-1, descending=True)
        cumsum = srt.cumsum(-1) - 1
        rhos = torch.arange(1, z.shape[-1] + 1, dtype=z.dtype, device=z.device)
        support_size = (rhos * srt > cumsum).sum(dim=-1, keepdim=True)
        tau = cumsum.gather(-1, support_size - 1) / support_size.to(z.dtype)
        return tau, support_size

    class Sparsemax(torch.autograd.Function):
        # entmax's SparsemaxFunction: the closed-form backward diag(s) - s s^T / |S|.
        @staticmethod
        def forward(ctx, z):
            z = z - z.max(dim=-1, keepdim=True).values  # entmax shifts by the max too
            tau, size = threshold(z)
            p = torch.clamp(z - tau, min=0)
            ctx.save_for_backward(size, p)
            return p

        @staticmethod
        def backward(ctx, g):
            size, p = ctx.saved_tensors
            g = g.masked_fill(p == 0, 0)
            v_hat = g.sum(dim=-1, keepdim=True) / size.to(g.dtype)
            return torch.where(p != 0, g - v_hat, torch.zeros_like(g))

    class SparsemaxLoss(torch.autograd.Function):
        # Per-example loss in the same stable form as dl's (1/2 ||q - p||^2 + q . max(tau - z, 0));
        # backward sparsemax(z) - q, as entmax's SparsemaxLoss.
        @staticmethod
        def forward(ctx, z, q):
            z = z - z.max(dim=-1, keepdim=True).values
            tau, _ = threshold(z)
            p = torch.clamp(z - tau, min=0)
            ctx.save_for_backward(p, q)
            return 0.5 * ((q - p) ** 2).sum(-1) + (q * torch.clamp(tau - z, min=0)).sum(-1)

        @staticmethod
        def backward(ctx, g):
            p, q = ctx.saved_tensors
            return g[:, None] * (p - q), None

    z0 = torch.from_numpy(inputs["z"])
    w, q = torch.from_numpy(inputs["w"]), torch.from_numpy(inputs["q"])

    def call():
        z = z0.detach().requires_grad_(True)
        value = (
            (w * Sparsemax.apply(z)).sum()
            if op == "sparsemax"
            else SparsemaxLoss.apply(z, q).mean()
        )
        value.backward()
        return value.detach(), z.grad

    return call, lambda: tuple(a.numpy() for a in call())


def benchmark(*, repeats: int, torch_threads: int, shapes=SHAPES, seed: int = 0) -> dict:
    info = machine()
    have_torch = matmul_peak.torch_device() == "cpu"
    rows = []
    snap = cpu_snapshot()
    for k, b in shapes:
        inputs = make_inputs(k, b, seed)
        for op in OPS:
            calls = {f"jax {m}": jax_call(op, m, inputs) for m in JAX_METHODS}
            if have_torch:
                calls["torch sort"] = torch_call(op, inputs, torch_threads)
            ref_value, ref_grad = calls["jax sort"][1]()
            parity = {}
            for name, (_, par) in calls.items():
                value, grad = par()
                parity[name] = max(
                    float(np.max(np.abs(value - ref_value))), float(np.max(np.abs(grad - ref_grad)))
                )
            # Calls per repeat from one timed call of the slowest, so a repeat is ~TARGET_CALL_S.
            slowest = 0.0
            for call, _ in calls.values():
                t = cpu_snapshot()
                jax.block_until_ready(call())
                slowest = max(slowest, cpu_snapshot()[0] - t[0])
            n = max(1, int(TARGET_CALL_S / max(slowest, 1e-6)))

            def runner(call):
                def run(steps: int) -> None:
                    for _ in range(steps):
                        out = call()
                    jax.block_until_ready(out)  # torch tensors pass through unchanged

                return Runner(run, [])

            seconds, busy = time_runners(
                {name: runner(c) for name, (c, _) in calls.items()}, steps=n, repeats=repeats
            )
            ms = {name: 1e3 * statistics.median(s) / n for name, s in seconds.items()}
            rows.append(
                {
                    "K": k,
                    "B": b,
                    "op": op,
                    "calls_per_repeat": n,
                    "ms": ms,
                    "others_busy": {name: statistics.median(v) for name, v in busy.items()},
                    "parity_max_abs_diff": parity,
                }
            )
            print(format_row(rows[-1]), flush=True)
    return {
        "machine": {
            **info,
            "loadavg_1min_end": os.getloadavg()[0],
            "others_busy_fraction": others_busy(snap, cpu_snapshot()),
        },
        "config": {
            "repeats": repeats,
            "seed": seed,
            "torch_threads": torch_threads,
            "fixed_point_max_k": FIXED_POINT_MAX_K,
            "fixed_point_max_passes": FIXED_POINT_MAX_PASSES,
        },
        "rows": rows,
    }


def format_row(r: dict) -> str:
    ms = r["ms"]
    auto = "fixed_point" if r["K"] <= FIXED_POINT_MAX_K else f"fp<={FIXED_POINT_MAX_PASSES}|sort"
    cells = "".join(f"{ms[name]:>20.3f}" for name in ms)
    ratios = ""
    if "torch sort" in ms:
        # Speed ratios as in benchmarks.mlp_step: JAX calls/s over PyTorch calls/s (> 1: JAX faster).
        ratios = "".join(f"{ms['torch sort'] / ms[f'jax {m}']:>10.2f}" for m in JAX_METHODS)
    busy = max(r["others_busy"].values())
    parity = max(r["parity_max_abs_diff"].values())
    return (
        f"{r['K']:>6}{r['B']:>6}  {r['op']:<15}{cells}{ratios}{auto:>13}{parity:>10.1e}{busy:>7.0%}"
    )


def header(names) -> str:
    cells = "".join(f"{n + ' ms':>20}" for n in names)
    ratios = "".join(f"{'/' + m[:8]:>10}" for m in JAX_METHODS) if "torch sort" in names else ""
    return f"{'K':>6}{'B':>6}  {'op':<15}{cells}{ratios}{'auto picks':>13}{'parity':>10}{'busy':>7}"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="interleaved repeats (median)")
    parser.add_argument("--json", default="", help="also write the result to this path")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=matmul_peak.xla_cpu_threads(),
        help="PyTorch intra-op threads (default: as many as XLA uses; 1 sidesteps OpenMP's "
        "barrier stalls when another process holds a core)",
    )
    args = parser.parse_args(argv)
    m = machine()
    print(
        f"{m['cpu']}, {m['xla_cpu_threads']} threads, JAX backend {m['jax_backend']}, "
        f"load {m['loadavg_1min_start']:.1f}; PyTorch threads {args.torch_threads}"
    )
    names = [f"jax {x}" for x in JAX_METHODS] + (
        ["torch sort"] if matmul_peak.torch_device() == "cpu" else []
    )
    print(header(names))
    print("(ratios: torch ms / jax ms, i.e. JAX calls/s over PyTorch's; > 1: JAX faster)")
    res = benchmark(repeats=args.repeats, torch_threads=args.torch_threads)
    busy = res["machine"]["others_busy_fraction"]
    lines = [f"other processes kept {busy:.0%} of the CPUs busy; load end {os.getloadavg()[0]:.1f}"]
    lines += _cli.contention_warning(busy, line=_cli.BUSY_ELSEWHERE)
    return _cli.finish(res, "\n".join(lines), args.json)


if __name__ == "__main__":
    main()
