"""The PyTorch side of `benchmarks.sweep_vmap`: the same 16 digits MLP trainings (same initial
parameters, learning rates, L2 coefficients, shared batch order and loss) written the two ways a
PyTorch user would.

  torch sequential  one `nn.Sequential` + `torch.optim.SGD` per configuration, trained in eager
                    mode one after another; the batch schedule is preallocated as tensors.
  torch vmap        the models stacked with `torch.func.stack_module_state` and trained at once:
                    `vmap(grad_and_value(loss))` over models of `functional_call`, then an SGD
                    update of the stacked parameters (the torch.func "model ensembling" recipe).
  torch.compile vmap  that step (gradients and update) under `torch.compile`, unless
                    `--no-torch-compile` (it compiles in about 20 s on 2 cores).

Loss of a model, as on the JAX side (`benchmarks.sweep_vmap.factories`): masked mean
cross-entropy (padding rows of an epoch's last batch have mask 0) + l2/2 (||W_1||^2 + ||W_2||^2),
kernels only. Initial parameters are JAX's, copied in (flax kernels are [in, out], torch weights
[out, in]); the parity check compares the first PARITY_STEPS per-step losses of every model with
the JAX sweep's. torch is imported lazily: without it `benchmarks.sweep_vmap --no-torch` runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import jax
import numpy as np

from benchmarks import _cli, matmul_peak, mlp_step
from dl.train import sweep

PARITY_STEPS = 3  # per-step losses compared with the JAX sweep's, from the same parameters
LAYERS = ("dense_0", "head")  # flax names of the MLP's two Dense layers, input first


def initial_params(init_fn, keys: jax.Array, hparams) -> dict:
    """The sweep's initial parameters (`sweep.init_model` of each key, a `lax.map` as in
    `sweep.sweep`) as host numpy, leaves [n, ...]."""
    init = jax.jit(
        lambda k, hp: jax.lax.map(lambda a: sweep.init_model(*a, init_fn=init_fn)[0], (k, hp))
    )
    return jax.tree.map(np.asarray, jax.device_get(init(keys, hparams)))


def _torch_batches(batches: dict) -> dict:
    """The [steps, B, ...] schedule as torch tensors, converted once (int64 labels for
    `cross_entropy`)."""
    import torch

    return {
        "x": torch.from_numpy(np.array(batches["x"], np.float32)),
        "y": torch.from_numpy(np.array(batches["y"], np.int64)),
        "mask": torch.from_numpy(np.array(batches["mask"], np.float32)),
    }


def _state_dicts(params0: dict) -> list[dict]:
    """One torch `state_dict` for `nn.Sequential(Linear, Tanh, Linear)` per model."""
    import torch

    n = params0[LAYERS[0]]["kernel"].shape[0]
    out = []
    for i in range(n):
        sd = {}
        for module, name in zip((0, 2), LAYERS, strict=True):
            kernel, bias = params0[name]["kernel"][i], params0[name]["bias"][i]
            sd[f"{module}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.T))
            sd[f"{module}.bias"] = torch.from_numpy(np.array(bias))
        out.append(sd)
    return out


def _model(state_dict: dict):
    import torch

    w1, w2 = state_dict["0.weight"], state_dict["2.weight"]
    model = torch.nn.Sequential(
        torch.nn.Linear(w1.shape[1], w1.shape[0]),
        torch.nn.Tanh(),
        torch.nn.Linear(w2.shape[1], w2.shape[0]),
    )
    model.load_state_dict(state_dict)
    return model


def _loss(logits, y, mask, l2, weights):
    """Masked mean cross-entropy + l2/2 sum ||W||^2 (`dl.ops.losses.cross_entropy` with a mask
    and `dl.ops.regularizers.l2_penalty`)."""
    import torch.nn.functional as F

    nll = F.cross_entropy(logits, y, reduction="none")
    data_loss = (nll * mask).sum() / mask.sum().clamp_min(1.0)
    return data_loss + 0.5 * l2 * sum(w.square().sum() for w in weights)


def sequential_runner(params0: dict, lr: np.ndarray, l2: np.ndarray, batches: dict):
    """`mlp_step.Runner`: run(steps) trains each model in turn for `steps` steps, eager PyTorch."""
    import torch

    torch.set_num_threads(matmul_peak.xla_cpu_threads())
    data = _torch_batches(batches)
    state_dicts = _state_dicts(params0)

    def train(i: int, steps: int, losses: list | None = None) -> None:
        model = _model(state_dicts[i])
        weights = [model[0].weight, model[2].weight]
        opt = torch.optim.SGD(model.parameters(), lr=float(lr[i]))
        l2_i = float(l2[i])
        for t in range(steps):
            opt.zero_grad(set_to_none=True)
            logits = model(data["x"][t])
            loss = _loss(logits, data["y"][t], data["mask"][t], l2_i, weights)
            loss.backward()
            opt.step()
            if losses is not None:
                losses.append(loss.detach())

    def run(steps: int) -> None:
        for i in range(len(state_dicts)):
            train(i, steps)

    losses = []
    for i in range(len(state_dicts)):
        model_losses: list = []
        train(i, min(PARITY_STEPS, len(data["x"])), model_losses)
        losses.append([float(v) for v in model_losses])
    return mlp_step.Runner(run, losses)


def vmap_runner(
    params0: dict, lr: np.ndarray, l2: np.ndarray, batches: dict, *, compile_step: bool = False
):
    """`mlp_step.Runner`: run(steps) trains all models at once for `steps` steps with torch.func;
    `compile_step` wraps the whole step (gradients and update) in `torch.compile`."""
    import torch
    from torch.func import functional_call, grad_and_value, stack_module_state, vmap

    torch.set_num_threads(matmul_peak.xla_cpu_threads())
    data = _torch_batches(batches)
    models = [_model(sd) for sd in _state_dicts(params0)]
    stacked0, _ = stack_module_state(models)
    stacked0 = {k: v.detach().clone() for k, v in stacked0.items()}
    base = _model(_state_dicts(params0)[0]).to("meta")
    lr_t, l2_t = (torch.tensor(np.asarray(v, np.float32)) for v in (lr, l2))  # [n]

    def loss_one(p: dict, l2_i, x, y, mask):
        logits = functional_call(base, p, (x,))
        return _loss(logits, y, mask, l2_i, [p["0.weight"], p["2.weight"]])

    grads_of = vmap(grad_and_value(loss_one), in_dims=(0, 0, None, None, None))

    def step(p: dict, x, y, mask):
        g, loss = grads_of(p, l2_t, x, y, mask)
        new = {k: v - lr_t.view(-1, *[1] * (v.dim() - 1)) * g[k] for k, v in p.items()}
        return new, loss

    step_fn: Callable = torch.compile(step) if compile_step else step

    def train(steps: int, losses: list | None = None) -> dict:
        p = {k: v.clone() for k, v in stacked0.items()}
        for t in range(steps):
            p, loss = step_fn(p, data["x"][t], data["y"][t], data["mask"][t])
            if losses is not None:
                losses.append(loss)
        return p

    def run(steps: int) -> None:
        train(steps)

    losses: list = []
    train(min(PARITY_STEPS, len(data["x"])), losses)
    return mlp_step.Runner(run, torch.stack(losses, dim=1).tolist())


def ratio_key(name: str) -> str:
    """The ratio's name, as `mlp_step` names its own: "torch vmap" -> "jax_sweep_over_torch_vmap"."""
    return "jax_sweep_over_" + _cli.torch_key(name)


def compare(
    swept: Callable,
    keys: jax.Array,
    hparams: dict,
    batches: dict,
    *,
    init_fn,
    repeats: int,
    torch_compile: bool,
) -> dict:
    """The JAX sweep (`swept`, a compiled `jit_sweep`) timed interleaved with the PyTorch
    implementations of the module docstring, after one untimed warm-up run of each.

    Returns {"results": {name: `mlp_step.summarize` of its runs, "steps" counting model-steps,
    plus "seconds_median"}, "ratios": {"jax_sweep_over_<torch name>": speed ratio, > 1 when the
    JAX sweep is faster, "..._quiet" from the quiet repeats, null when a side had none (the
    reason under "notes")}, "parity_max_abs_loss_diff": over the first PARITY_STEPS losses of
    every model, "parity_losses", "build_s": seconds to set up each PyTorch implementation (with
    torch.compile's compilation), "notes"}.
    """
    n, num_steps = keys.shape[0], jax.tree.leaves(batches)[0].shape[0]
    host_batches = jax.tree.map(np.asarray, jax.device_get(batches))
    lr, l2 = (np.asarray(hparams[k]) for k in ("learning_rate", "l2"))
    params0 = initial_params(init_fn, keys, hparams)
    jax_losses = np.asarray(swept(keys, hparams, batches).metrics["loss"])[:, :PARITY_STEPS]

    def run_jax(steps: int) -> None:
        if steps != num_steps:
            raise ValueError(f"the compiled sweep runs all {num_steps} steps, not {steps}")
        jax.block_until_ready(swept(keys, hparams, batches))

    builders = {
        "torch sequential": lambda: sequential_runner(params0, lr, l2, host_batches),
        "torch vmap": lambda: vmap_runner(params0, lr, l2, host_batches),
    }
    if torch_compile:
        builders["torch.compile vmap"] = lambda: vmap_runner(
            params0, lr, l2, host_batches, compile_step=True
        )
    runners = {"jax sweep": mlp_step.Runner(run_jax, jax_losses.tolist())}
    notes, build_s = {}, {}
    for name, build in builders.items():
        start = time.perf_counter()
        try:
            runners[name] = build()
        except Exception as e:  # torch.compile: a missing C++ toolchain etc.: report, not hide
            if not name.startswith("torch.compile"):
                raise
            notes[name] = f"failed: {type(e).__name__}: {str(e)[:200]}"
            continue
        # Set-up, the parity steps and, for torch.compile, its compilation.
        build_s[name] = time.perf_counter() - start
    for runner in runners.values():
        runner.run(num_steps)  # warm-up: first-call allocations are not the steady state
    seconds, busy = mlp_step.time_runners(runners, steps=num_steps, repeats=repeats)
    # FLOPs of one model's step, for GFLOP/s; "steps" are model-steps: n per step of the sweep.
    first, head = params0[LAYERS[0]]["kernel"], params0[LAYERS[1]]["kernel"]  # [n, in, out]
    widths = (first.shape[1], first.shape[2], head.shape[2])
    flops = mlp_step.step_flops(widths, host_batches["x"].shape[1])
    results = {}
    for name in runners:
        r = mlp_step.summarize(seconds[name], busy[name], steps=n * num_steps, flops=flops)
        r["seconds_median"] = n * num_steps / r["steps_per_s"]
        quiet_sps = r["quiet_steps_per_s"]
        r["quiet_seconds_median"] = None if quiet_sps is None else n * num_steps / quiet_sps
        results[name] = r
    jax_res, ratios = results["jax sweep"], {}
    for name, res in results.items():
        if name.startswith("torch"):
            ratios[ratio_key(name)], _ = mlp_step.speed_ratio(jax_res, res)
            quiet_key = ratio_key(name) + "_quiet"
            ratios[quiet_key], why = mlp_step.speed_ratio(jax_res, res, quiet=True)
            if why:
                notes[quiet_key] = f"null: {why}"
    return {
        "results": results,
        "ratios": ratios,
        "parity_max_abs_loss_diff": _cli.loss_parity(runners),
        "parity_losses": {name: r.warmup_losses for name, r in runners.items()},
        "build_s": build_s,
        "notes": notes,
    }


def format_compare(res: dict) -> str:
    """Lines for `benchmarks.sweep_vmap.format_row`: each implementation's median time for the
    whole sweep, over all repeats and over the quiet ones (`mlp_step.summarize`), per model-step,
    and how many times faster the JAX sweep is."""
    header = f"  {'implementation':<20}{'median ms':>11}{'quiet ms (n)':>18}{'us/model-step':>15}"
    lines = [header + f"{'JAX sweep faster (all / quiet)':>33}"]

    def times(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}x"  # None: no quiet repeats (see the notes)

    for name, r in res["results"].items():
        key = ratio_key(name)
        ratio = (
            f"{times(res['ratios'][key])} / {times(res['ratios'][key + '_quiet'])}"
            if key in res["ratios"]
            else ""
        )
        quiet_s = r["quiet_seconds_median"]
        quiet = "-" if quiet_s is None else f"{quiet_s * 1e3:.1f}"
        quiet += f" ({r['quiet_repeats']}/{len(r['seconds'])})"
        lines.append(
            f"  {name:<20}{r['seconds_median'] * 1e3:>11.1f}{quiet:>18}"
            f"{1e6 / r['steps_per_s']:>15.2f}{ratio:>33}".rstrip()
        )
    lines.append(
        f"  parity: max |loss difference| over the first {PARITY_STEPS} steps of every model "
        f"{res['parity_max_abs_loss_diff']:.1e}"
    )
    lines.append(
        "  set-up incl. parity steps and compilation: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in res["build_s"].items())
    )
    lines += [f"  note: {k}: {v}" for k, v in res["notes"].items()]
    if any(r["quiet_repeats"] < len(r["seconds"]) for r in res["results"].values()):
        lines.append(
            f"  WARNING: other processes used over {mlp_step.CONTENDED:.0%} of the CPUs during "
            "some repeats; quiet: the repeats when they did not (PyTorch's OpenMP threads "
            "suffer most)"
        )
    return "\n".join(lines)
