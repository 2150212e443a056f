"""A hyperparameter sweep of 16 small digits MLPs trained at once (`dl.train.sweep`, `vmap` over
models of a `lax.scan` over steps, one compiled program) against the same 16 trainings run one
after another -- the problem and timing of `experiments/hyperparameter_search.py`.

Run:    python -m benchmarks.sweep_vmap [--hidden 16] [--batch-size 16] [--epochs 10]
                                        [--table] [--engine] [--repeats 7] [--json PATH]
                                        [--no-torch] [--no-torch-compile]
Expect: see BENCHMARKS.md for the figures on the 2-core CPU.

Sequential baselines, each compiled once and timed after a warm-up call:
  scan     one jitted `lax.scan` over all steps per model (`jit_train_one`): the strongest
           sequential baseline; the ratio to it is what `vmap` itself buys.
  engine   (`--engine`) the engine's jitted, donated `train_step` dispatched from Python once per
           step, as `dl.train.loop` runs a model; the learning rate lives in the optimizer state
           (`optax.inject_hyperparams`) and the L2 coefficient in `extra`, so one compilation
           serves all 16 configurations. Its parameters are checked equal to the sweep's (for
           models with a rate <= 0.1: above, SGD here is chaotic and rounding differences
           between any two programs grow exponentially).
PyTorch (at the main size; `benchmarks.sweep_vmap_torch`): the same 16 trainings from the same
initial parameters, one after another in eager PyTorch and all at once with `torch.func.vmap`
(and that step under `torch.compile`), timed interleaved with the JAX sweep; their first losses
are checked equal to the sweep's.
Repeats are interleaved so that background load hits every variant alike; medians reported.
`--table` repeats the measurement over model sizes (hidden width = batch size), showing where
stacking models pays: when one model's step is dominated by fixed per-step costs. `--scaling`
repeats it at the main size for 1 to 32 models: the sweep's cost per model-step, and so the
speedup, levels off by 16 models (see BENCHMARKS.md for why).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import _cli, matmul_peak, sweep_vmap_torch
from dl import data
from dl.nn.mlp import MLP
from dl.ops.losses import cross_entropy
from dl.ops.regularizers import l2_penalty
from dl.optim.optimizers import sgd
from dl.train import sweep
from dl.train.state import TrainState
from dl.train.step import jit_train_step

LOG10_LR = (-3.0, 1.0)  # Bergstra & Bengio 2012, Table 1 (as the experiment)
LOG10_L2 = (np.log10(3.1e-7), np.log10(3.1e-5))
TABLE_SIZES = (8, 16, 32, 64, 128)  # hidden width = batch size
SCALING_MODELS = (1, 2, 4, 8, 16, 32)  # models per sweep for --scaling


def factories(model: MLP, input_dim: int):
    """init / loss (cross-entropy + l2/2 ||W||^2) / SGD with traced hyperparameters, as in the
    experiment."""

    def init_fn(key, hparams):
        del hparams
        return model.init(key, jnp.zeros((1, input_dim), jnp.float32))["params"]

    def make_loss(hparams):
        def loss_fn(params, extra, batch, rng):
            del rng
            logits = model.apply({"params": params}, batch["x"])
            data_loss = cross_entropy(logits=logits, targets=batch["y"], mask=batch["mask"])
            return data_loss + hparams["l2"] * l2_penalty(params), ({}, extra)

        return loss_fn

    return init_fn, make_loss, lambda hparams: sgd(hparams["learning_rate"])


def engine_runner(model: MLP, init_fn, make_loss, keys, hparams, batches):
    """`run() -> [params per model]`: each model trained by the engine's jitted step, one Python
    dispatch per step; compiled once for all models (see the module docstring)."""
    tx = optax.inject_hyperparams(sgd)(learning_rate=1.0)
    # The loss reads its L2 coefficient from `extra`, a traced input, not from a closure.
    step = jit_train_step(lambda p, extra, b, r: make_loss(extra)(p, extra, b, r))
    steps = [sweep.model_slice(batches, t) for t in range(jax.tree.leaves(batches)[0].shape[0])]
    init = jax.jit(lambda key, hp: sweep.init_model(key, hp, init_fn=init_fn))

    def run():
        out = []
        for i in range(keys.shape[0]):
            hp = sweep.model_slice(hparams, i)
            params, step_key = init(keys[i], hp)
            state = TrainState.create(
                apply_fn=None, params=params, tx=tx, rng=step_key, extra={"l2": hp["l2"]}
            )
            opt_state = state.opt_state._replace(
                hyperparams={**state.opt_state.hyperparams, "learning_rate": hp["learning_rate"]}
            )
            state = state.replace(opt_state=opt_state)
            for batch in steps:
                state, _ = step(state, batch)
            out.append(jax.block_until_ready(state.params))
        return out

    return run


def measure(
    *,
    hidden: int,
    batch_size: int,
    epochs: int,
    models: int,
    repeats: int,
    engine: bool,
    torch: bool = False,
    torch_compile: bool = False,
    steps: int = 0,
    seed: int = 0,
) -> dict:
    """One row: the sweep against sequential scans (`sweep.time_against_sequential`), the engine
    loop if `engine`, the PyTorch implementations (`sweep_vmap_torch.compare`) if `torch`.
    `steps` > 0 replaces `epochs` epochs of steps (for smoke tests)."""
    train = data.load("digits")["train"]
    loader = data.Loader(train, batch_size, seed=seed)
    num_steps = steps or epochs * loader.steps_per_epoch
    batches = jax.device_put(sweep.stack_batches(loader.batch, num_steps))
    model = MLP(hidden=(hidden,), out=10, activation="tanh")
    init_fn, make_loss, make_tx = factories(model, train.x.shape[1])
    rng = np.random.default_rng(seed)
    lo, hi = np.array([LOG10_LR[0], LOG10_L2[0]]), np.array([LOG10_LR[1], LOG10_L2[1]])
    values = (10.0 ** (lo + (hi - lo) * rng.random((models, 2)))).astype(np.float32)
    hparams = {"learning_rate": jnp.asarray(values[:, 0]), "l2": jnp.asarray(values[:, 1])}
    keys = jax.random.split(jax.random.PRNGKey(seed), models)

    swept, sweep_compile = sweep.compile_timed(
        sweep.jit_sweep(init_fn=init_fn, make_loss=make_loss, make_tx=make_tx),
        keys,
        hparams,
        batches,
    )
    one, one_compile = sweep.compile_timed(
        sweep.jit_train_one(init_fn=init_fn, make_loss=make_loss, make_tx=make_tx),
        keys[0],
        sweep.model_slice(hparams, 0),
        batches,
    )
    res = sweep.time_against_sequential(swept, one, keys, hparams, batches, repeats=repeats)
    res.update(
        hidden=hidden,
        batch_size=batch_size,
        steps=num_steps,
        models=models,
        sweep_compile_s=sweep_compile,
        sequential_compile_s=one_compile,
    )
    if engine:
        run = engine_runner(model, init_fn, make_loss, keys, hparams, batches)
        start = time.perf_counter()
        engine_params = run()  # warm-up; includes the one compilation of the step
        res["engine_first_run_s"] = time.perf_counter() - start
        reference = swept(keys, hparams, batches).params
        stable = [i for i in range(models) if values[i, 0] <= 0.1]  # see the module docstring
        res["engine_parity_max_abs_diff"] = max(
            (
                float(jnp.max(jnp.abs(a - b[i])))
                for i in stable
                for a, b in zip(jax.tree.leaves(engine_params[i]), jax.tree.leaves(reference))
            ),
            default=0.0,
        )
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            runs.append(time.perf_counter() - start)
        res["engine_s"] = statistics.median(runs)
        res["speedup_vs_engine"] = res["engine_s"] / res["sweep_s"]
    if torch:
        res["torch"] = sweep_vmap_torch.compare(
            swept,
            keys,
            hparams,
            batches,
            init_fn=init_fn,
            repeats=repeats,
            torch_compile=torch_compile,
        )
    return res


def format_row(r: dict) -> str:
    row = (
        f"hidden {r['hidden']:4d} batch {r['batch_size']:4d} steps {r['steps']:5d}: "
        f"sweep {r['sweep_s'] * 1e3:8.1f} ms  {r['models']} sequential scans "
        f"{r['sequential_s'] * 1e3:8.1f} ms  speedup {r['speedup']:5.2f}x  "
        f"(compile: sweep {r['sweep_compile_s']:.1f} s, one {r['sequential_compile_s']:.1f} s)"
    )
    if "engine_s" in r:
        row += (
            f"\n{'':35s}engine loop {r['engine_s'] * 1e3:8.1f} ms  speedup "
            f"{r['speedup_vs_engine']:5.1f}x  (parity {r['engine_parity_max_abs_diff']:.1e})"
        )
    if "torch" in r:
        row += "\n" + sweep_vmap_torch.format_compare(r["torch"])
    return row


def format_scaling_row(r: dict) -> str:
    per_step = 1e6 / (r["models"] * r["steps"])  # seconds per call -> us per model-step
    return (
        f"models {r['models']:3d}: sweep {r['sweep_s'] * 1e3:8.1f} ms "
        f"({r['sweep_s'] * per_step:5.2f} us/model-step)  sequential "
        f"{r['sequential_s'] * 1e3:8.1f} ms ({r['sequential_s'] * per_step:5.2f} us/model-step)  "
        f"speedup {r['speedup']:5.2f}x"
    )


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hidden", type=int, default=16, help="hidden width (the experiment's: 16)")
    p.add_argument("--batch-size", type=int, default=16, help="minibatch (the experiment's: 16)")
    p.add_argument("--epochs", type=int, default=10, help="training epochs (the experiment's: 10)")
    p.add_argument("--models", type=int, default=16, help="configurations per sweep")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--table", action="store_true", help=f"also hidden = batch in {TABLE_SIZES}")
    p.add_argument("--engine", action="store_true", help="also time the engine-loop baseline")
    p.add_argument(
        "--scaling", action="store_true", help=f"also {SCALING_MODELS} models at the main size"
    )
    p.add_argument(
        "--steps", type=int, default=0, help="train steps at the main size, if > 0, not epochs"
    )
    p.add_argument(
        "--no-torch", dest="torch", action="store_false", help="skip the PyTorch side (main size)"
    )
    p.add_argument(
        "--no-torch-compile",
        dest="torch_compile",
        action="store_false",
        help="skip torch.compile of the torch vmap step (about 20 s to compile on 2 cores)",
    )
    p.add_argument("--json", default="", help="write the results here")
    args = p.parse_args(argv)
    notes = {}
    if args.torch and matmul_peak.torch_device() != "cpu":
        notes["torch"] = (
            "skipped: PyTorch missing, or JAX not on the CPU (the torch side is CPU-only)"
        )
    common = {
        "epochs": args.epochs,
        "models": args.models,
        "repeats": args.repeats,
        "engine": args.engine,
    }
    result = {
        "loadavg_1min_start": os.getloadavg()[0],
        "device": jax.devices()[0].device_kind,
        "main": measure(
            hidden=args.hidden,
            batch_size=args.batch_size,
            torch=args.torch and not notes,
            torch_compile=args.torch_compile,
            steps=args.steps,
            **common,
        ),
        "notes": notes,
    }
    print(format_row(result["main"]), flush=True)
    for k, v in notes.items():
        print(f"note: {k}: {v}")
    if args.table:
        result["table"] = []
        for size in TABLE_SIZES:
            result["table"].append(measure(hidden=size, batch_size=size, **common))
            print(format_row(result["table"][-1]), flush=True)
    if args.scaling:
        result["scaling"] = []
        for models in SCALING_MODELS:
            result["scaling"].append(
                measure(
                    hidden=args.hidden,
                    batch_size=args.batch_size,
                    **{**common, "models": models, "engine": False},
                )
            )
            print(format_scaling_row(result["scaling"][-1]), flush=True)
    result["loadavg_1min_end"] = os.getloadavg()[0]
    load = (
        f"load average (1 min) {result['loadavg_1min_start']:.1f} -> "
        f"{result['loadavg_1min_end']:.1f} on {os.cpu_count()} cores"
    )
    return _cli.finish(result, load, args.json, indent=1)


if __name__ == "__main__":
    main()
