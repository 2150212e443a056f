"""Two-player training: alternating discriminator and generator updates in one jitted step.

A `GANState` holds two ordinary `TrainState`s, `d` (the discriminator side) and `g` (the
generator side). Each side's params may be any pytree, so a CycleGAN puts both discriminators in
`d` ({"dx": ..., "dy": ...}) and both generators in `g` ({"g": ..., "f": ...}), each side with
one optax transformation. One step of `adversarial_step` is

    d_steps times:  D <- D - step of d_loss_fn   (G fixed)
    once:           G <- G - step of g_loss_fn   (against the D just updated, or with
                                                  simultaneous=True the D of the step's start)

all inside one `jax.jit`. The two losses have the engine's loss signature plus the other player's
whole TrainState (read-only: its params, extra collections, optimizer and optimizer state, the
last two for unrolled GANs):

    d_loss_fn(d_params, d_extra, g_state, batch, rng) -> (loss, (metrics, new_d_extra))
    g_loss_fn(g_params, g_extra, d_state, batch, rng) -> (loss, (metrics, new_g_extra))

Gradients are taken only with respect to the first argument, so no stop_gradient is needed on
the other player's outputs. `rng` is `fold_in(side.rng, side.step)` (each side counts its own
updates), so the randomness, like the data, is a function of the step alone. Batch statistics of
the *other* player's models computed inside a loss are discarded (only a player's own loss
updates its own `extra`). With d_steps > 1 the discriminator reuses `batch` (with a fresh rng per
update) unless `stacked_d_batches=True`, when every leaf of the batch has a leading [d_steps]
axis: D's update i sees slice i, G sees the last slice.

Metrics (scalars): d_loss, g_loss, loss (= g_loss: the progress bar's number), the engine's norms
per side (d_grad_norm, d_param_norm, d_update_norm, g_...), and each loss's own metrics prefixed
"d_" or "g_". The D metrics are those of its last update in the step.

`GANState` has `.step` (the generator's update count, = the number of adversarial steps) and
`.params` ({"d": ..., "g": ...}), so `dl.train.loop.train` runs it as it runs a TrainState:
metrics.jsonl, the non-finite guard (NonFiniteError names the step and metric), orbax
checkpoints of the whole GANState, and exact resume. `train` below is that loop.

Seeds: `vmap_seeds(step)` maps the step over a leading [n] axis of a stacked GANState
(`init_seeds`), returning seed-averaged metrics plus per-seed columns ("d_loss/3"), so n seeds
train in one compiled call and still pass through the same loop, guard and checkpoints.

Example (a GAN on 2-D data; models are Flax modules `gen`, `disc`):

    from dl import optim
    from dl.objectives import gan
    from dl.train import adversarial as adv

    def d_loss_fn(d_params, d_extra, g_state, batch, rng):
        fake = gen.apply({"params": g_state.params}, jax.random.normal(rng, (B, 256)))
        real_logits = disc.apply({"params": d_params}, batch["x"])
        fake_logits = disc.apply({"params": d_params}, fake)
        return gan.discriminator_loss(real_logits, fake_logits), ({}, d_extra)

    def g_loss_fn(g_params, g_extra, d_state, batch, rng):
        fake = gen.apply({"params": g_params}, jax.random.normal(rng, (B, 256)))
        logits = disc.apply({"params": d_state.params}, fake)
        return gan.generator_loss_nonsaturating(logits), ({}, g_extra)

    state = adv.create(d_apply=disc.apply, d_params=dp, d_tx=optim.adam(2e-4, b1=0.5),
                       g_apply=gen.apply, g_params=gp, g_tx=optim.adam(2e-4, b1=0.5), rng=key)
    step = adv.jit_adversarial_step(d_loss_fn, g_loss_fn)
    state, rows, summary = adv.train(state, train_step=step, batch_fn=loader.batch,
                                     num_steps=10_000, workdir=workdir, checkpoint_every=1000)

For an unrolled GAN, g_loss_fn calls `gan.unrolled_generator_loss(g_params, d_state.params,
d_state.opt_state, d_tx=d_state.tx, ...)`. For batch norm, keep {"batch_stats": ...} in `extra`
(`create(..., d_extra=..., g_extra=...)`) and return the updated collection from the loss.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from dl.train.state import TrainState

PlayerLoss = Callable[..., tuple[jax.Array, tuple[dict[str, jax.Array], dict[str, Any]]]]


class GANState(flax.struct.PyTreeNode):
    """The two players' TrainStates. Stacked over seeds (`init_seeds`), every leaf gains a
    leading [n] axis; `.step` then reads seed 0 (all seeds step together)."""

    d: TrainState
    g: TrainState

    @property
    def step(self) -> jax.Array:
        step = self.g.step
        return step if jnp.ndim(step) == 0 else step.reshape(-1)[0]

    @property
    def params(self) -> dict[str, Any]:
        return {"d": self.d.params, "g": self.g.params}


def create(
    *,
    d_apply: Callable[..., Any],
    d_params: Any,
    d_tx: optax.GradientTransformation,
    g_apply: Callable[..., Any],
    g_params: Any,
    g_tx: optax.GradientTransformation,
    rng: jax.Array,
    d_extra: dict[str, Any] | None = None,
    g_extra: dict[str, Any] | None = None,
) -> GANState:
    """A GANState at step 0; the two sides' step keys are fold_in(rng, 0) (D) and 1 (G)."""
    d = TrainState.create(
        apply_fn=d_apply, params=d_params, tx=d_tx, rng=jax.random.fold_in(rng, 0), extra=d_extra
    )
    g = TrainState.create(
        apply_fn=g_apply, params=g_params, tx=g_tx, rng=jax.random.fold_in(rng, 1), extra=g_extra
    )
    return GANState(d=d, g=g)


def _update(
    state: TrainState, loss_fn: PlayerLoss, other: TrainState, batch: Any, prefix: str
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One gradient step of one player (the engine's `train_step` with the other player passed)."""
    rng = jax.random.fold_in(state.rng, state.step)
    (loss, (metrics, extra)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, state.extra, other, batch, rng
    )
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    out = {f"{prefix}_{k}": v for k, v in metrics.items()}
    out.update(
        {
            f"{prefix}_loss": loss,
            f"{prefix}_grad_norm": optax.tree.norm(grads),
            f"{prefix}_param_norm": optax.tree.norm(params),
            f"{prefix}_update_norm": optax.tree.norm(updates),
        }
    )
    new = state.replace(step=state.step + 1, params=params, opt_state=opt_state, extra=extra)
    return new, out


def adversarial_step(
    state: GANState,
    batch: Any,
    *,
    d_loss_fn: PlayerLoss,
    g_loss_fn: PlayerLoss,
    d_steps: int = 1,
    stacked_d_batches: bool = False,
    simultaneous: bool = False,
) -> tuple[GANState, dict[str, jax.Array]]:
    """`d_steps` discriminator updates, then one generator update (see the module docstring).
    simultaneous=True: G's update is taken against the discriminator as it was at the start of
    the step (both players step from the same parameters, as in Metz et al.'s notebook)."""
    if d_steps < 1:
        raise ValueError(f"d_steps must be >= 1, got {d_steps}")
    d = state.d
    d_metrics: dict[str, jax.Array] = {}
    for i in range(d_steps):
        d_batch = jax.tree.map(lambda x, i=i: x[i], batch) if stacked_d_batches else batch
        d, d_metrics = _update(d, d_loss_fn, state.g, d_batch, "d")
    g_batch = jax.tree.map(lambda x: x[-1], batch) if stacked_d_batches else batch
    g, g_metrics = _update(state.g, g_loss_fn, state.d if simultaneous else d, g_batch, "g")
    metrics = {**d_metrics, **g_metrics, "loss": g_metrics["g_loss"]}
    return GANState(d=d, g=g), metrics


def vmap_seeds(
    step_fn: Callable[[GANState, Any], tuple[GANState, dict[str, jax.Array]]],
    *,
    batch_axis: int | None = None,
    per_seed: Sequence[str] = ("d_loss", "g_loss"),
) -> Callable[[GANState, Any], tuple[GANState, dict[str, jax.Array]]]:
    """`step_fn` over a stacked GANState (leaves [n, ...]). The batch is shared by all seeds
    (batch_axis=None) or has a leading seed axis (0). Metrics: the mean over seeds of each, plus
    "name/i" for every name in `per_seed` and seed i."""

    def stepped(state: GANState, batch: Any) -> tuple[GANState, dict[str, jax.Array]]:
        state, metrics = jax.vmap(step_fn, in_axes=(0, batch_axis))(state, batch)
        out = {k: jnp.mean(v) for k, v in metrics.items()}
        for name in per_seed:
            n = metrics[name].shape[0]
            out.update({f"{name}/{i}": metrics[name][i] for i in range(n)})
        return state, out

    return stepped


def jit_adversarial_step(
    d_loss_fn: PlayerLoss,
    g_loss_fn: PlayerLoss,
    *,
    d_steps: int = 1,
    stacked_d_batches: bool = False,
    simultaneous: bool = False,
    seeds: bool = False,
    batch_axis: int | None = None,
    per_seed: Sequence[str] = ("d_loss", "g_loss"),
) -> Callable[[GANState, Any], tuple[GANState, dict[str, jax.Array]]]:
    """`adversarial_step` with the losses bound, jitted with the state donated; `seeds=True`
    wraps it in `vmap_seeds(batch_axis=..., per_seed=...)` for a stacked state."""
    step = functools.partial(
        adversarial_step,
        d_loss_fn=d_loss_fn,
        g_loss_fn=g_loss_fn,
        d_steps=d_steps,
        stacked_d_batches=stacked_d_batches,
        simultaneous=simultaneous,
    )
    if seeds:
        step = vmap_seeds(step, batch_axis=batch_axis, per_seed=per_seed)
    return jax.jit(step, donate_argnums=0)


def init_seeds(make_state: Callable[[jax.Array], GANState], keys: jax.Array) -> GANState:
    """n GANStates stacked on a leading axis, one per row of the [n, 2] `keys`: `make_state`
    (which initializes both models from a key and calls `create`; the apply functions and
    optimizers must not depend on the key) is jitted once, called per key and the results are
    stacked. (Not `jit(vmap(make_state))`: under jax 0.10 on CPU that hung in execution here
    with Flax's orthogonal initializer; an eager `vmap` compiles every initializer op apart.)"""
    make = jax.jit(make_state)
    states = [make(k) for k in keys]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *states)


def seed_slice(state: GANState, i: int) -> GANState:
    """Seed i of a stacked GANState."""
    return jax.tree.map(lambda x: x[i], state)


def train(state: GANState, **kwargs: Any):
    """`dl.train.loop.train` on a GANState: same arguments and returns (train_step is a
    `jit_adversarial_step`), except that `workdir` is created if missing. An `eval_fn` may use
    `state.params` = {"d": ..., "g": ...}."""
    from dl.train.loop import train as loop_train  # orbax is imported only when training

    os.makedirs(kwargs["workdir"], exist_ok=True)
    return loop_train(state, **kwargs)
