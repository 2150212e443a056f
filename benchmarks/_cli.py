"""What the benchmark scripts share around their measurements: the common flags, fp32 matmuls on
accelerators, printing the table and writing the JSON, the machine / parity / ratio / warning
lines of `format_result`, and the JAX and PyTorch runners with their ratios, all timed and named
as in `benchmarks.mlp_step`. One copy, so that each script holds only what it measures.

Runner, WARMUP_STEPS, CONTENDED and speed_ratio live here; `benchmarks.mlp_step` re-exports
them under their old names.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np

from benchmarks import matmul_peak

WARMUP_STEPS = 3  # compiles, and gives the losses both sides must agree on
CONTENDED = 0.10  # other processes' share of the CPUs above which the figures are flagged


class Runner(NamedTuple):
    """run(steps) trains `steps` steps and returns only when they are done; warmup_losses are the
    losses of the first WARMUP_STEPS steps from the shared initial parameters."""

    run: Callable[[int], None]
    warmup_losses: list[float]


def speed_ratio(num: dict, den: dict, *, quiet: bool = False) -> tuple[float | None, str]:
    """How many times faster `num` ran than `den` (steps/s over steps/s; both `summarize`
    results), over all repeats or, with `quiet`, over each side's quiet repeats only.

    Returns (ratio, ""), or (None, why) when a side had no quiet repeat: a ratio of nothing is
    reported as null with its reason, never as NaN.
    """
    key = "quiet_steps_per_s" if quiet else "steps_per_s"
    if num[key] is None or den[key] is None:
        counts = " and ".join(f"{r['quiet_repeats']} of {len(r['seconds'])}" for r in (num, den))
        return None, (
            f"no quiet repeats to compare ({counts} repeats quiet): other processes kept over "
            f"{CONTENDED:.0%} of the CPUs busy"
        )
    return num[key] / den[key], ""


def parser(doc: str, *, steps: int, repeats: int, repeats_help: str = ""):
    """An ArgumentParser described by `doc`'s first line, with --steps, --repeats and --json."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--steps", type=int, default=steps, help="timed steps per repeat")
    help_ = repeats_help or "repeats; the median is reported"
    p.add_argument("--repeats", type=int, default=repeats, help=help_)
    p.add_argument("--json", default="", help="also write the result to this path")
    return p


def add_no_torch_compile(
    p, help: str | None = "skip the torch.compile variant (its compile takes a while on CPU)"
) -> None:
    p.add_argument("--no-torch-compile", dest="torch_compile", action="store_false", help=help)


def exact_matmuls() -> None:
    """Full fp32 dots, as PyTorch's default and the matmul peak: accelerators may run fp32 dots
    in TF32/bf16 passes by default. A no-op on CPU."""
    if jax.default_backend() != "cpu":
        jax.config.update("jax_default_matmul_precision", "highest")


def finish(res: dict, text: str, json_path: str | None, **dump) -> dict:
    """Prints `text`; writes `res` to `json_path`, if any (json.dump, indent 2 unless `dump`
    says otherwise); returns `res`."""
    print(text)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(res, f, **{"indent": 2, **dump})
    return res


def machine_line(m: dict) -> str:
    """The line "cpu, N threads, JAX backend B, load a -> b" of a result's "machine"."""
    return (
        f"{m['cpu']}, {m['xla_cpu_threads']} threads, JAX backend {m['jax_backend']}, load "
        f"{m['loadavg_1min_start']:.1f} -> {m['loadavg_1min_end']:.1f}"
    )


def parity_text(diff: float, steps: str = "warm-up steps") -> str:
    return f"parity: max |loss difference| over {WARMUP_STEPS} {steps} {diff:.2e}"


def ratio_lines(ratios: dict, *, width: int, goal, notes: dict | None = None) -> list[str]:
    """A line per ratio (key padded to `width`, value or null in 7 columns, then `goal`: a string
    or a function of the key), then one per note."""
    lines = []
    for k, v in ratios.items():
        value = f"{'null':>7}" if v is None else f"{v:>7.3f}"  # why: in the notes
        lines.append(f"{k:<{width}}{value}{goal(k) if callable(goal) else goal}")
    return lines + [f"note: {k}: {v}" for k, v in (notes or {}).items()]


CONTENDED_LINE = "WARNING: other processes used over {:.0%} of the CPUs: the figures are contended"
BUSY_ELSEWHERE = "WARNING: over {:.0%} of the CPUs were busy elsewhere: figures contended"


def contention_warning(*busy: float, line: str = CONTENDED_LINE + "; rerun when idle") -> list[str]:
    """[`line` with CONTENDED put in] if an `others_busy` fraction in `busy` is over CONTENDED."""
    return [line.format(CONTENDED)] if any(b > CONTENDED for b in busy) else []


def torch_key(name: str) -> str:
    """A runner's name in a ratio key: "torch.compile" -> "torch_compile"."""
    return name.replace(" ", "_").replace(".", "_")


def add_ratios(ratios: dict, notes: dict, key: str, num: dict, den: dict) -> None:
    """ratios[key] = `speed_ratio`(num, den), and over the quiet repeats under the key with
    "_quiet_over_" for "_over_" and "_quiet" appended (null: the reason goes to `notes`)."""
    ratios[key], _ = speed_ratio(num, den)
    quiet = key.replace("_over_", "_quiet_over_", 1) + "_quiet"
    ratios[quiet], why = speed_ratio(num, den, quiet=True)
    if why:
        notes[quiet] = f"null: {why}"


def loss_parity(runners: dict) -> float:  # max |warm-up loss difference| from the first
    losses = np.array([r.warmup_losses for r in runners.values()])
    return float(np.max(np.abs(losses - losses[0])))


def add_torch_runners(runners: dict, notes: dict, make: Callable, torch_compile: bool) -> None:
    """runners["torch eager"] = make(device=d), and "torch.compile" = make(device=d,
    compile_model=True) if `torch_compile`, d JAX's device; a side that cannot run: `notes`."""
    device = matmul_peak.torch_device()
    if device is None:
        notes["torch"] = "skipped: PyTorch missing or not on JAX's device"
        return
    runners["torch eager"] = make(device=device)
    if torch_compile:
        try:
            runners["torch.compile"] = make(device=device, compile_model=True)
        except Exception as e:  # noqa: BLE001 - a missing C++ toolchain etc.: report it
            notes["torch.compile"] = f"failed: {type(e).__name__}: {str(e)[:200]}"


def jax_train_runner(step: Callable, state, batch, warmup: int = 0) -> Runner:
    """The Runner of a jitted, donated engine step: `warmup` steps (WARMUP_STEPS if 0) give
    the losses."""
    losses = []
    for _ in range(warmup or WARMUP_STEPS):
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    holder = [state]

    def run(steps: int) -> None:
        s = holder[0]
        for _ in range(steps):
            s, _ = step(s, batch)  # no sync inside the loop: dispatch overlaps compute
        holder[0] = jax.block_until_ready(s)

    return Runner(run, losses)


def torch_train_runner(one_step: Callable, device: str) -> Runner:
    """The Runner of a PyTorch one_step() -> loss: WARMUP_STEPS steps give the losses; run
    syncs the device once, at the end."""
    import torch

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    losses = [float(one_step().detach()) for _ in range(WARMUP_STEPS)]

    def run(steps: int) -> None:
        for _ in range(steps):
            one_step()
        sync()

    return Runner(run, losses)
