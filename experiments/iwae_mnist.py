"""Importance weighted autoencoders (Burda, Grosse & Salakhutdinov 2016, ICLR, Table 1, MNIST,
one stochastic layer): the VAE and the IWAE, each trained with k = 1, 5 and 50 samples, scored
by the test log-likelihood (k = 5000 importance samples) and the number of active units.

Run:    python run.py iwae_mnist --scale quick
Expect: quick (VAE k = 1 and IWAE k = 5 only, 2 epochs each, Adam lr 3e-3 cosine, batch 100):
        94 s user+sys CPU (81 user + 13 sys; 338 s wall at load average 10-15). Test, nats:
        VAE k=1: L_1 -138.06, L_5 -135.41, L_50 -133.94, log-likelihood (K = 200, first 1000
        test digits) -132.87, so L_50 - L_1 = 4.12 (bar >= 1: pass); IWAE k=5: L_1 -129.89,
        L_50 -122.61, log-likelihood -121.60. All 50 units still active after 2 epochs (paper,
        after 3280 epochs: 19-25). Full (all six models, Burda's 3280-epoch schedule, K = 5000 on
        all 10000 test digits; a GPU run, not run yet): bars IWAE k=50 >= -85.5, VAE >= -87.5.

"VAE, k" trains the ELBO averaged over k samples; "IWAE, k" trains the bound
L_k = E log (1/k) sum_i w_i (eq. 8), whose gradient weights each sample by its normalized
importance weight. With k = 1 the two are the same objective. The architecture, data and
schedule are `experiments.vae_mnist`'s (784-200-200-50 tanh, dynamic binarization; full scale:
batch 20, Adam eps 1e-4, lr 1e-3 10^(-i/7) for 3^i epochs, i = 0..7, i.e. 3280 epochs).
Quick trains two of the six models (the VAE and the IWAE with k = 5) for a few epochs; its bar
is about the bounds of one trained model (L_50 > L_1 by a nat), not the paper's likelihoods.
"""

from __future__ import annotations

import os

import jax
import ml_collections
import numpy as np

from dl.models.vae import VAE
from dl.report import at_least, plots
from experiments import vae_mnist
from experiments._fields import Choice, Int, Tuple

# Burda et al. 2016, Table 1, MNIST, 1 stochastic layer: test log-likelihood (nats, k = 5000)
# and active units (of 50), for the training k.
PUBLISHED = {
    "vae_k1": (-86.76, 19),
    "vae_k5": (-86.47, 20),
    "vae_k50": (-86.35, 20),
    "iwae_k1": (-86.76, 19),
    "iwae_k5": (-85.54, 22),
    "iwae_k50": (-84.78, 25),
}
RUNS = tuple(PUBLISHED)
PAPER = {
    "citation": "Burda, Grosse & Salakhutdinov 2016, ICLR, 'Importance weighted autoencoders', "
    "Table 1 (MNIST, one stochastic layer 784-200-200-50)",
    "claim": "Training on the k-sample importance-weighted bound gives better log-likelihoods "
    "and more active latent units than the VAE, increasingly so with k; the VAE gains little "
    "from more samples.",
    "published": {f"{r}_test_ll_nats": ll for r, (ll, _) in PUBLISHED.items()}
    | {f"{r}_active_units": au for r, (_, au) in PUBLISHED.items()},
    "bars": {
        "smoke": "none (plumbing on synthetic IDX files)",
        "quick": "on the trained VAE (k = 1): test L_50 - L_1 >= 1 nat",
        "full": "test log-likelihood (k = 5000): IWAE k = 50 >= -85.5 (paper -84.78), VAE k = 1 "
        ">= -87.5 (paper -86.76)",
    },
}
GAP_BAR = 1.0  # quick: L_50 - L_1 on one model, nats
FULL_BARS = {"iwae_k50": -85.5, "vae_k1": -87.5}
ACTIVE_THRESHOLD = 1e-2  # Burda et al. sec. 5.2: Cov_x(E_q[z_d | x]) > 1e-2


def get_config(scale: str = "quick") -> ml_collections.ConfigDict:
    c = vae_mnist.get_config(scale)  # data, schedule and scoring as vae_mnist (fields there)
    del c.latents, c.grid_size, c.epochs
    c.activation = "tanh"  # Burda et al.'s units, at every scale
    c.latent = {"smoke": 4, "quick": 50, "full": 50}[scale]  # Burda et al.'s 50
    # Models trained, "<vae|iwae>_k<k>"; quick trains two of the six (module docstring).
    c.runs = {"smoke": ("vae_k1", "iwae_k5"), "quick": ("vae_k1", "iwae_k5"), "full": RUNS}[scale]
    c.num_epochs = {"smoke": 1, "quick": 2, "full": 3280}[scale]  # cosine schedule only
    c.gap_model = "vae_k1"  # quick bar: the model whose L_50 - L_1 is checked
    c.ll_examples = {"smoke": 20, "quick": 1000, "full": 10000}[scale]  # test digits scored
    return c


FIELDS = {
    **{k: v for k, v in vae_mnist.FIELDS.items() if k not in ("latents", "grid_size", "epochs")},
    "num_epochs": Int(lo=1),
    "latent": Int(1, 1024),
    "runs": Tuple(Choice(RUNS), max_len=len(RUNS)),
    "gap_model": Choice(RUNS),
}

CHECKS = [c for c in vae_mnist.CHECKS if "epochs" not in c.fields]


def parse_run(run: str) -> tuple[str, int]:
    """'iwae_k50' -> ('iwae', 50): the bound trained and its number of samples."""
    kind, k = run.split("_k")
    return ("elbo" if kind == "vae" else "iwae"), int(k)


def active_units(model, params, x: np.ndarray) -> int:
    """Latent dimensions whose posterior mean varies over the data: Cov_x(E_q[z_d|x]) > 1e-2."""
    mean = jax.jit(lambda p, x: model.apply({"params": p}, x, method="encode")[0])(params, x)
    return int(np.sum(np.var(np.asarray(mean, np.float64), axis=0) > ACTIVE_THRESHOLD))


def table(metrics: dict, runs, ll_samples: int) -> str:
    head = (
        f"{'model':<10}{'L_1':>9}{'L_5':>9}{'L_50':>9}{f'LL K={ll_samples}':>12}"
        f"{'paper LL':>10}{'AU':>5}{'paper AU':>9}"
    )
    lines = [head]
    for r in RUNS:
        ll, au = PUBLISHED[r]
        if r in runs:
            m = {
                k: metrics.get(f"{r}_{k}", float("nan"))
                for k in ("test_bound_k1", "test_bound_k5", "test_bound_k50", "test_ll")
            }
            ours = (
                f"{m['test_bound_k1']:>9.2f}{m['test_bound_k5']:>9.2f}{m['test_bound_k50']:>9.2f}"
            )
            ours += f"{m['test_ll']:>12.2f}"
            ours_au = f"{metrics[f'{r}_active_units']:>5d}"
        else:
            ours, ours_au = f"{'(not trained at this scale)':>39}", f"{'-':>5}"
        lines.append(f"{r:<10}{ours}{ll:>10.2f}{ours_au}{au:>9d}")
    return "\n".join(lines)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    splits = vae_mnist.binary_splits(config)
    metrics: dict = {}
    curves = {}
    for name in config.runs:
        kind, k = parse_run(name)
        os.makedirs(f"{workdir}/{name}", exist_ok=True)
        model = VAE(hidden=tuple(config.hidden), latent=config.latent, activation=config.activation)
        params, state, history, _ = vae_mnist.train_vae(
            name, model, splits, config, workdir, epochs=config.num_epochs, kind=kind, k=k
        )
        scores = vae_mnist.score(model, params, state, splits, config)
        metrics.update({f"{name}_{key}": v for key, v in scores.items()})
        metrics[f"{name}_active_units"] = active_units(model, params, splits["test"].x)
        rows = [r for r in history if "val_elbo" in r]
        curves[name] = ([r["step"] for r in rows], [r["val_elbo"] for r in rows])
    plots.curves(
        curves,
        f"{workdir}/val_elbo.png",
        xlabel="step",
        ylabel="val ELBO (nats)",
        title="VAE vs IWAE: validation ELBO",
    )
    report = table(metrics, config.runs, config.ll_samples)
    print("Burda et al. 2016, Table 1 (MNIST, one stochastic layer) beside ours (test set):")
    print(report)
    with open(f"{workdir}/table.txt", "w") as f:
        f.write(report + "\n")
    bars = []
    gm = config.gap_model
    if config.scale == "quick" and gm in config.runs and {1, 50} <= set(config.bound_ks):
        gap = metrics[f"{gm}_test_bound_k50"] - metrics[f"{gm}_test_bound_k1"]
        metrics[f"{gm}_gap_k50_k1"] = gap
        bars.append(at_least(f"{gm}: test L_50 - L_1 (nats)", gap, GAP_BAR))
    if config.scale == "full":
        for r, bound in FULL_BARS.items():
            if r in config.runs:
                paper = f"{PUBLISHED[r][0]:.2f}"
                bars.append(
                    at_least(
                        f"{r}: test log-likelihood, K = {config.ll_samples}",
                        metrics[f"{r}_test_ll"],
                        bound,
                        paper=paper,
                    )
                )
    metrics["bars"] = bars
    return metrics
