"""The machine's measured fp32 matmul peak: the ceiling the MLP step is judged against.

Run:    python -m benchmarks.matmul_peak [--sizes 2048 4096] [--repeats R] [--json PATH]
Expect: on the 2-core CPU of BENCHMARKS.md: about 40-90 GFLOP/s depending on the library.

An n x n by n x n product costs 2 n^3 flops (n^3 multiply-adds). Each library (JAX/XLA, numpy's
BLAS, PyTorch's BLAS) multiplies square fp32 matrices already resident on the device; a library's
figure is the best over sizes and repeats (the best, not the median, because a peak is what the
hardware can do when nothing else interferes), and the machine's peak is the best library's.
Square products of a few thousand are large enough that BLAS blocking, not memory traffic or
dispatch, decides the rate.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

# 512 fits the L2/L3 caches and is where the BLAS libraries here run fastest; 2048 and 4096 are
# the classic large sizes. The peak is the best over all of them.
DEFAULT_SIZES = (512, 1024, 2048, 4096)


def matmul_flops(n: int) -> int:
    """2 n^3: a multiply and an add per term of each of the n^2 outputs' length-n dot products."""
    return 2 * n**3


def xla_cpu_threads() -> int:
    """Threads XLA's CPU backend computes with: one per CPU this process may run on (its default
    intra-op pool size). PyTorch is pinned to the same count so neither side has more cores."""
    return len(os.sched_getaffinity(0))


def _best_seconds(run: Callable[[int], None], *, repeats: int, min_sample_s: float = 0.05) -> float:
    """Best wall time of one product: `run(k)` does k products and returns when they are done.
    One untimed warm-up call compiles JAX, spins up BLAS thread pools and faults in the output;
    each timed sample then runs enough products to last about `min_sample_s`, so that small sizes
    are not timer- or wake-up-bound."""
    t0 = time.perf_counter()
    run(1)
    k = max(1, int(min_sample_s / max(time.perf_counter() - t0, 1e-6)))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        run(k)
        best = min(best, (time.perf_counter() - t0) / k)
    return best


def _jax_runner(n: int, seed: int) -> Callable[[int], None]:
    # Drawn by numpy and copied over: jax.random would compile a sampler per size.
    rng = np.random.default_rng(seed)
    a, b = (jax.device_put(rng.standard_normal((n, n), dtype=np.float32)) for _ in range(2))
    # Full fp32: on GPUs JAX's default precision may use TF32, which is a different (faster)
    # arithmetic than the fp32 the MLP benchmark asks for.
    matmul = jax.jit(lambda x, y: jnp.matmul(x, y, precision=jax.lax.Precision.HIGHEST))

    def run(k: int) -> None:
        outs = [matmul(a, b) for _ in range(k)]  # dispatched back to back, synced once
        jax.block_until_ready(outs)

    return run


def _numpy_runner(n: int, seed: int) -> Callable[[int], None]:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), np.float32)

    def run(k: int) -> None:
        for _ in range(k):
            np.matmul(a, b, out=out)

    return run


def _torch_runner(n: int, seed: int, device: str) -> Callable[[int], None]:
    import torch  # optional dependency (the `bench` extra)

    torch.set_num_threads(xla_cpu_threads())
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=gen, dtype=torch.float32).to(device)
    b = torch.randn(n, n, generator=gen, dtype=torch.float32).to(device)
    out = torch.empty(n, n, dtype=torch.float32, device=device)

    def run(k: int) -> None:
        for _ in range(k):
            torch.matmul(a, b, out=out)
        if device == "cuda":
            torch.cuda.synchronize()

    return run


def torch_device() -> str | None:
    """Where PyTorch should run to match JAX's default device: "cpu", "cuda", or None when torch
    is missing or cannot reach JAX's accelerator."""
    try:
        import torch
    except ImportError:
        return None
    if jax.default_backend() == "cpu":
        return "cpu"
    if jax.default_backend() == "gpu" and torch.cuda.is_available():
        return "cuda"
    return None


def runners(n: int, *, seed: int = 0) -> dict[str, Callable[[int], None]]:
    """One fp32 n x n matmul per library available on JAX's default device. numpy only counts on
    a CPU backend: it never runs on the accelerator."""
    out = {"jax": _jax_runner(n, seed)}
    if jax.default_backend() == "cpu":
        out["numpy"] = _numpy_runner(n, seed)
    device = torch_device()
    if device is not None:
        out["torch"] = _torch_runner(n, seed, device)
    return out


def measure_peak(sizes=DEFAULT_SIZES, *, repeats: int = 5, seed: int = 0) -> dict:
    """Best fp32 matmul GFLOP/s per library and size.

    Returns {"gflops": {library: {str(n): GFLOP/s}}, "best_by_library": {library: GFLOP/s},
    "peak_gflops": float, "peak_library": str, "sizes": [n...]}.
    """
    table: dict[str, dict[str, float]] = {}
    for n in sizes:
        for lib, run in runners(n, seed=seed).items():
            seconds = _best_seconds(run, repeats=repeats)
            table.setdefault(lib, {})[str(n)] = matmul_flops(n) / seconds / 1e9
    best = {lib: max(by_size.values()) for lib, by_size in table.items()}
    peak_library = max(best, key=best.get)
    return {
        "gflops": table,
        "best_by_library": best,
        "peak_gflops": best[peak_library],
        "peak_library": peak_library,
        "sizes": list(sizes),
    }


def format_peak(result: dict) -> str:
    sizes = result["sizes"]
    lines = [
        "fp32 matmul GFLOP/s (best of repeats)",
        f"{'library':<8}" + "".join(f"{n:>10}" for n in sizes),
    ]
    for lib, by_size in result["gflops"].items():
        lines.append(f"{lib:<8}" + "".join(f"{by_size[str(n)]:>10.1f}" for n in sizes))
    lines.append(f"peak: {result['peak_gflops']:.1f} GFLOP/s ({result['peak_library']})")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES), help="square matrix sizes n"
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed samples per library and size")
    parser.add_argument("--json", default="", help="also write the result to this path")
    args = parser.parse_args(argv)
    result = measure_peak(args.sizes, repeats=args.repeats)
    print(format_peak(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
