"""Unrolled GANs against mode collapse on 2-D mixtures (Metz et al. 2017, fig. 2; scored with
the protocol of Srivastava et al. 2017, VEEGAN, Table 1).

Run:    python run.py gan_mixtures --scale quick
Expect: quick (ring only, 5 vmapped seeds per arm, 2,500 steps, batch 128, width 64) on a 2-core
        CPU: about 135 s of CPU time (user 132 s + sys 3 s; 347-583 s wall at load average
        12-14; two runs gave identical numbers).
        Modes captured (mean of 5; per seed): vanilla GAN 5.0 (6, 5, 3, 5, 6), unrolled GAN 7.6
        (8, 8, 6, 8, 8); high-quality samples 12.5% and 10.4% (VEEGAN: GAN 1 / 99.3%,
        unrolled 7.6 / 35.6%). Both quick bars pass. Full scale has not been run.

What the quick run shows, honestly: in samples_ring.png the vanilla GAN does *not* collapse
onto one mode as in Metz et al.'s fig. 2 within 2,500 steps; both arms put mass near all 8
modes, and the vanilla GAN loses modes in the score because several of its clusters sit more
than 3 std (0.06) off the mode. The unrolled GAN places its clusters on the modes sooner. Both
arms are still far from the paper's sample quality at this length (10-12% high quality).

Setup (the authors' released notebook, github.com/poolio/unrolled_gan, by Metz's co-author
Poole; departures marked *):
* G: z (256-d standard normal) -> 128 tanh -> 128 tanh -> 2, linear output; D: 2 -> 128 tanh ->
  128 tanh -> 1 logit; all kernels orthogonal with gain 1.4, zero biases.
* Adam with beta1 = 0.5, eps = 1e-8; D's learning rate 1e-4, G's 1e-3; batch 512; 25,000 steps;
  both players step from the same parameters (`simultaneous=True` in `dl.train.adversarial`).
* Loss: D minimizes the binary cross-entropy; G minimizes the *minimax* loss log(1 - D(G(z)))
  on D unrolled 5 Adam steps ahead (gradients through the steps, `gan.unrolled_generator_loss`),
  0 steps for the vanilla GAN. `generator_loss="nonsaturating"` is the alternative.
* * Data: the mixtures of the paper and VEEGAN, a ring of 8 (radius 2) and a grid of 25
  (spacing 2 on [-4, 4]^2), std 0.02 (`dl.eval.mixtures`); the notebook's own ring had radius 1,
  std 0.01, and `linspace(0, 2 pi, 8)`, i.e. only 7 distinct modes.
* Score: 2,500 samples per trained model from a fixed z; high quality within 3 std of the
  nearest mode; * a mode is captured with >= `min_mode_samples` = 20 high-quality samples (with
  1, a diffuse untrained-looking generator "captured" 4.6 of 8 modes at 0.3% high quality in a
  probe); 5 seeds trained at once as a vmap, averaged.
* * Quick: ring only; width 64, batch 128 and 2,500 steps; both learning rates x10 (1e-3 and
  1e-2: the notebook's ratio, 10x fewer steps). Measured while choosing this (5 seeds, ring):
  with the notebook's rates both arms stayed diffuse for 1,500 steps (width 64); with D at
  1e-3 and G at 1e-3, alternating updates, both arms reached 8.0 modes by 2,500 steps (66.6% /
  52.0% high quality), i.e. that setting shows no collapse at all; the quick setting keeps G
  faster than D as the paper does.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import ml_collections
import numpy as np

from dl import optim
from dl.eval import mixtures
from dl.objectives import gan
from dl.report import at_least
from dl.train import adversarial as adv
from experiments._fields import SEED, Bool, Check, Choice, Float, Int, Tuple

PAPER = {
    "citation": "Metz, Poole, Pfau & Sohl-Dickstein 2017, Unrolled Generative Adversarial "
    "Networks (ICLR), fig. 2; Srivastava, Valkov, Russell, Gutmann & Sutton 2017, VEEGAN, Table 1",
    "claim": "Unrolling the discriminator 5 steps lets the generator cover every mode of a "
    "mixture where a vanilla GAN collapses onto one or a few.",
    "published": "VEEGAN Table 1 (modes captured / % high-quality samples): 2D ring (max 8): GAN "
    "1 / 99.3, unrolled GAN 7.6 / 35.6, VEEGAN 8 / 52.9; 2D grid (max 25): GAN 3.3 / 0.5, "
    "unrolled GAN 23.6 / 16, VEEGAN 24.6 / 40",
    "bars": {
        "smoke": "none asserted (plumbing only; bars reported)",
        "quick": "ring: unrolled >= 7 of 8 modes (mean of 5 seeds); vanilla GAN < unrolled",
        "full": "ring as quick; grid: unrolled >= 20 of 25 modes; vanilla GAN < unrolled",
    },
}

# (mixture, modes captured GAN, unrolled; % high quality GAN, unrolled) from VEEGAN Table 1.
PUBLISHED = {"ring": (1.0, 7.6, 99.3, 35.6), "grid": (3.3, 23.6, 0.5, 16.0)}
ARMS = ("gan", "unrolled")
MODE_BAR = {"ring": 7.0, "grid": 20.0}


def get_config(scale: str = "quick") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0  # root seed: model seeds, data and evaluation keys derive from it
    c.mixtures = {"smoke": ("ring",), "quick": ("ring",), "full": ("ring", "grid")}[scale]
    c.arms = ARMS  # "gan" (0 unrolling steps) and "unrolled" (unroll_steps)
    c.unroll_steps = 5  # Metz et al.'s 5 (their fig. 2 also shows 1 and 10)
    c.num_seeds = {"smoke": 2, "quick": 5, "full": 5}[scale]  # vmapped runs per arm
    c.num_steps = {"smoke": 6, "quick": 2500, "full": 25000}[scale]  # adversarial steps
    c.batch_size = {"smoke": 16, "quick": 128, "full": 512}[scale]  # real and fake per step
    c.z_dim = {"smoke": 8, "quick": 256, "full": 256}[scale]  # latent size (notebook: 256)
    c.hidden = {"smoke": 8, "quick": 64, "full": 128}[scale]  # width of G's and D's 2 layers
    # Adam steps of D and G: the notebook's 1e-4 and 1e-3 at full; quick multiplies both by 10
    # (same ratio, 10x fewer steps: the notebook's 25k steps compressed into 2.5k).
    c.d_learning_rate = {"smoke": 1e-3, "quick": 1e-3, "full": 1e-4}[scale]
    c.g_learning_rate = {"smoke": 1e-2, "quick": 1e-2, "full": 1e-3}[scale]
    c.simultaneous = True  # G steps against D as it was before D's step (notebook), else after
    c.beta1 = 0.5  # Adam's beta1 for both (notebook)
    c.init_gain = 1.4  # orthogonal-init gain of every kernel (notebook)
    c.generator_loss = "minimax"  # "minimax" (notebook) or "nonsaturating"
    c.mixture_std = mixtures.MIXTURE_STD  # std of every mixture component (0.02)
    c.eval_samples = {"smoke": 100, "quick": 2500, "full": 2500}[scale]  # scored samples
    c.min_mode_samples = 20  # high-quality samples that capture a mode (see the docstring)
    c.plot_every = {"smoke": 3, "quick": 500, "full": 5000}[scale]  # steps between snapshots
    c.checkpoint_every = {"smoke": 0, "quick": 0, "full": 5000}[scale]  # 0: at the end only
    c.progress = scale != "smoke"  # progress bars
    return c


FIELDS = {
    "seed": SEED,
    "mixtures": Tuple(Choice(tuple(mixtures.MIXTURES))),
    "arms": Tuple(Choice(ARMS)),
    "unroll_steps": Int(lo=1),
    "num_seeds": Int(lo=1),
    "num_steps": Int(lo=1),
    "batch_size": Int(lo=1),
    "z_dim": Int(lo=1),
    "hidden": Int(lo=1),
    "d_learning_rate": Float(lo=0.0, lo_open=True),
    "g_learning_rate": Float(lo=0.0, lo_open=True),
    "beta1": Float(lo=0.0, hi=1.0, hi_open=True),
    "init_gain": Float(lo=0.0, lo_open=True),
    "simultaneous": Bool(),
    "generator_loss": Choice(tuple(gan.GENERATOR_LOSSES)),
    "mixture_std": Float(lo=0.0, lo_open=True),
    "eval_samples": Int(lo=1),
    "min_mode_samples": Int(lo=1),
    "plot_every": Int(lo=1),
    "checkpoint_every": Int(lo=0),
    "progress": Bool(),
}
CHECKS = [Check(("plot_every", "num_steps"), lambda p, n: p <= n, "be at most num_steps")]


class MLP(nn.Module):
    """x -> [Dense(hidden) -> tanh] x 2 -> Dense(out), orthogonal kernels (gain), zero biases."""

    hidden: int
    out: int
    gain: float

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        init = nn.initializers.orthogonal(self.gain)
        for _ in range(2):
            x = jnp.tanh(nn.Dense(self.hidden, kernel_init=init)(x))
        return nn.Dense(self.out, kernel_init=init)(x)


def build(config) -> tuple[MLP, MLP]:
    """(generator, discriminator)."""
    return (
        MLP(config.hidden, 2, config.init_gain),
        MLP(config.hidden, 1, config.init_gain),
    )


def losses(config, means: np.ndarray, unroll: int):
    """(d_loss_fn, g_loss_fn) for `dl.train.adversarial`; data and z are drawn from the step's
    rng, so every batch is a function of (seed, step)."""
    gen, disc = build(config)
    b = config.batch_size
    g_loss_kind = config.generator_loss

    def draw(rng):
        real = mixtures.sample_mixture(jax.random.fold_in(rng, 0), means, b, config.mixture_std)
        z = jax.random.normal(jax.random.fold_in(rng, 1), (b, config.z_dim))
        return real, z

    def d_objective(d_params, real, fake):
        real_logits = disc.apply({"params": d_params}, real)[:, 0]
        fake_logits = disc.apply({"params": d_params}, fake)[:, 0]
        return gan.discriminator_loss(real_logits, fake_logits)

    def d_loss_fn(d_params, d_extra, g_state, batch, rng):
        real, z = draw(rng)
        fake = gen.apply({"params": g_state.params}, z)
        return d_objective(d_params, real, fake), ({}, d_extra)

    def g_loss_fn(g_params, g_extra, d_state, batch, rng):
        real, z = draw(rng)
        fake = gen.apply({"params": g_params}, z)  # once; the unrolled steps reuse it

        def g_objective(_, d_params):
            logits = disc.apply({"params": d_params}, fake)[:, 0]
            return gan.generator_loss(logits, g_loss_kind)

        loss = gan.unrolled_generator_loss(
            g_params,
            d_state.params,
            d_state.opt_state,
            d_loss_fn=lambda d_params, _: d_objective(d_params, real, fake),
            g_loss_fn=g_objective,
            d_tx=d_state.tx,
            steps=unroll,
        )
        return loss, ({}, g_extra)

    return d_loss_fn, g_loss_fn


def init_state(config, key: jax.Array) -> adv.GANState:
    gen, disc = build(config)
    kg, kd, kr = jax.random.split(key, 3)
    return adv.create(
        d_apply=disc.apply,
        d_params=disc.init(kd, jnp.zeros((1, 2)))["params"],
        d_tx=optim.adam(config.d_learning_rate, b1=config.beta1),
        g_apply=gen.apply,
        g_params=gen.init(kg, jnp.zeros((1, config.z_dim)))["params"],
        g_tx=optim.adam(config.g_learning_rate, b1=config.beta1),
        rng=kr,
    )


def evaluator(config, means: np.ndarray):
    """Jitted: stacked G params [n, ...] -> (seed 0's samples [eval_samples, 2], modes [n],
    high-quality fractions [n]), from a fixed z (the same for every arm and step)."""
    gen, _ = build(config)
    z = jax.random.normal(
        jax.random.fold_in(jax.random.PRNGKey(config.seed), 1),
        (
            config.eval_samples,
            config.z_dim,
        ),
    )

    def one(p):
        x = gen.apply({"params": p}, z)
        s = mixtures.score_modes(x, means, config.mixture_std, min_count=config.min_mode_samples)
        return x, s.modes, s.high_quality

    @jax.jit
    def evaluate(stacked):
        x, modes, hq = jax.vmap(one)(stacked)
        return x[0], modes, hq

    return evaluate


def train_arm(config, mixture: str, arm: str, workdir: str, evaluate) -> dict[str, Any]:
    """Trains `num_seeds` GANs of one arm on one mixture; returns snapshots and final scores."""
    means = mixtures.mixture_means(mixture)
    unroll = config.unroll_steps if arm == "unrolled" else 0
    root = jax.random.PRNGKey(config.seed)
    model_keys = jax.random.split(jax.random.fold_in(root, 0), config.num_seeds)
    d_loss_fn, g_loss_fn = losses(config, means, unroll)
    step = adv.jit_adversarial_step(
        d_loss_fn, g_loss_fn, seeds=True, simultaneous=config.simultaneous
    )
    state = adv.init_seeds(functools.partial(init_state, config), model_keys)
    snapshots: dict[int, np.ndarray] = {}

    def eval_fn(state):
        x, modes, hq = jax.device_get(evaluate(state.g.params))
        snapshots[int(state.step)] = x  # seed 0, for the figure
        return {
            "modes": float(np.mean(modes)),
            "high_quality": float(np.mean(hq)),
            **{f"modes/{i}": int(m) for i, m in enumerate(modes)},
        }

    snapshots[0] = np.asarray(evaluate(state.g.params)[0])
    run_dir = os.path.join(workdir, "runs", f"{mixture}_{arm}")
    state, rows, _ = adv.train(
        state,
        train_step=step,
        batch_fn=lambda s: {},
        num_steps=config.num_steps,
        workdir=run_dir,
        eval_fn=eval_fn,
        eval_every=config.plot_every,
        monitor="modes",
        checkpoint_every=config.checkpoint_every,
        resume=config.get("resume", False),
        log_every=max(1, min(100, config.plot_every)),
        progress=config.progress,
        desc=f"{mixture} {arm}",
    )
    _, modes, hq = jax.device_get(evaluate(state.g.params))
    return {
        "rows": rows,
        "snapshots": snapshots,
        "modes": np.asarray(modes, np.float64),
        "high_quality": np.asarray(hq, np.float64),
    }


def plot_snapshots(results: dict, means: np.ndarray, path: str, title: str) -> str:
    """One row per arm of scatter panels (seed 0's samples over the modes) at each snapshot."""
    arms = list(results)
    steps = sorted(results[arms[0]]["snapshots"])
    fig, axes = plt.subplots(
        len(arms), len(steps), figsize=(1.9 * len(steps), 2.0 * len(arms)), squeeze=False
    )
    lim = float(np.abs(means).max()) + 1.5
    for r, arm in enumerate(arms):
        for c, s in enumerate(steps):
            ax = axes[r, c]
            x = results[arm]["snapshots"].get(s)
            ax.scatter(means[:, 0], means[:, 1], s=25, c="tab:green", marker="x", lw=1)
            if x is not None:
                ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.3, c="tab:blue")
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"step {s}", fontsize=8)
            if c == 0:
                ax.set_ylabel(arm, fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    metrics: dict[str, Any] = {}
    bars = []
    table = []
    all_rows = []
    print("published (VEEGAN Table 1): modes GAN / unrolled, % high quality GAN / unrolled")
    for mixture in config.mixtures:
        pub = PUBLISHED[mixture]
        print(f"  {mixture}: {pub[0]} / {pub[1]}, {pub[2]} / {pub[3]}")
        means = mixtures.mixture_means(mixture)
        evaluate = evaluator(config, means)
        results = {arm: train_arm(config, mixture, arm, workdir, evaluate) for arm in config.arms}
        for arm, r in results.items():
            key = f"{mixture}_{arm}"
            metrics[f"{key}_modes"] = float(r["modes"].mean())
            metrics[f"{key}_modes_per_seed"] = r["modes"].tolist()
            metrics[f"{key}_high_quality"] = float(100 * r["high_quality"].mean())
            all_rows += [{"mixture": mixture, "arm": arm, **row} for row in r["rows"]]
            paper_modes, paper_hq = (pub[0], pub[2]) if arm == "gan" else (pub[1], pub[3])
            table.append(
                {
                    "mixture": mixture,
                    "arm": arm,
                    "modes": metrics[f"{key}_modes"],
                    "modes_paper": paper_modes,
                    "high_quality_pct": metrics[f"{key}_high_quality"],
                    "high_quality_pct_paper": paper_hq,
                }
            )
            print(
                f"  ours {key}: modes {metrics[f'{key}_modes']:.2f} {r['modes'].tolist()}, "
                f"high quality {metrics[f'{key}_high_quality']:.1f}%"
            )
        plot_snapshots(
            results,
            means,
            os.path.join(workdir, f"samples_{mixture}.png"),
            f"{mixture}: samples of seed 0 over the modes (x)",
        )
        if "unrolled" in results and (mixture == "ring" or config.num_steps >= 25000):
            bars.append(
                at_least(
                    f"{mixture}: unrolled GAN modes captured (mean of {config.num_seeds})",
                    metrics[f"{mixture}_unrolled_modes"],
                    MODE_BAR[mixture],
                    paper=f"{pub[1]} (VEEGAN Table 1)",
                )
            )
        if set(ARMS) <= set(results):
            gap = metrics[f"{mixture}_unrolled_modes"] - metrics[f"{mixture}_gan_modes"]
            bars.append(  # > 0: a mean of num_seeds integers is > 0 iff >= 1 / num_seeds
                at_least(
                    f"{mixture}: unrolled minus vanilla GAN modes (must be > 0)",
                    gap,
                    1.0 / config.num_seeds,
                    paper=f"{pub[1] - pub[0]:.1f} (VEEGAN Table 1)",
                )
            )
    with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in all_rows)
    metrics["table"] = table
    metrics["bars"] = bars
    return metrics
