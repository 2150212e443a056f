"""DCGAN and conditional DCGAN on MNIST (Radford, Metz & Chintala 2016; Mirza & Osindero 2014),
scored by an MNIST classifier: label accuracy of conditional samples and "MNIST FID".

Run:    python run.py dcgan_mnist --scale quick
Expect: quick (G 32/16 maps, D 16/32, 1500 steps of batch 64 per GAN (1.9 epochs), z 100;
        scorer MnistCNN 8/16 maps, 128 units, 1 epoch: 96.9% test accuracy): cGAN label
        accuracy 85.8% (bar >= 70%: pass; 37.4% after 600 steps); MNIST FID on 2000 samples vs
        2000 test images 32.4 unconditional, 14.2 conditional, untrained 441 (ratios 13.6 and
        31.1, bar >= 5: pass). 76 s wall, 107 s user + 12 s sys CPU on the idle cores, the
        scorer's training included (with the fused batch norm; 83.1% and 123 CPU s before it).
        Over seeds 0 / 1 / 2 (`--seed`, conditional GAN alone, before the fused batch norm):
        label accuracy 83.1 / 87.8 / 88.1%, FID ratio 28.1 / 29.7 / 30.9.

Both GANs are `dl.models.dcgan.Generator` / `Discriminator` (z -> dense 7x7 -> two stride-2
transposed convs -> 28x28 tanh, batch norm in G; D two stride-2 convs, leaky ReLU 0.2, batch
norm on the second),
trained with Adam (lr 2e-4, beta1 0.5, the paper's) and the non-saturating generator loss by
`dl.train.adversarial` (one D update, then one G update, per step). The conditional pair takes
the one-hot label concatenated to z (G, Mirza & Osindero) and by projection in D (Miyato &
Koyama 2018; the concatenated input planes are the `conditioning="concat"` option).

Scoring (`experiments._scorer`: an MnistCNN trained once per scale and cached): the conditional
samples' label accuracy (the fraction of samples generated for digit k that the scorer calls
k), and the Fréchet distance between Gaussians fitted to the scorer's penultimate features of
generated and of test images ("MNIST FID", `dl.eval.frechet`), for the trained and for the
untrained (initial) generators. Samples are drawn with G's batch norm on the statistics of each
sample batch of 500 (labels cycling 0-9), as the reference PyTorch DCGAN samples; the label
accuracy with the running averages is reported beside it (`label_accuracy_running_stats`). The papers report neither number on MNIST: Radford et al. show
samples, Mirza & Osindero a Parzen log-likelihood (132 +- 1.8) and samples, so the bars check
what their figures show (recognizable digits of the asked-for class) in numbers.
Pictures: samples_{unconditional,conditional}.png (the conditional grid's column k is digit k),
interpolation.png (rows: linear paths between two latents, as Radford et al.'s Fig. 4),
curves_{unconditional,conditional}.png.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from dl import data
from dl.eval.classifier_scores import label_accuracy
from dl.eval.frechet import batched_features, feature_fid
from dl.models.dcgan import Discriminator, Generator
from dl.objectives.gan_players import dcgan_losses, sample_latent
from dl.optim import adam
from dl.report import at_least, plots
from dl.report.grids import image_grid
from dl.train import adversarial
from experiments import _scorer
from experiments._fields import DATA_DIR, SCALES, SEED, Bool, Choice, Dir, Float, Int, Tuple

PAPER = {
    "citation": "Radford, Metz & Chintala 2016, ICLR, 'Unsupervised representation learning with "
    "deep convolutional generative adversarial networks' (Figs. 3-4); Mirza & Osindero 2014, "
    "arXiv:1411.1784, 'Conditional generative adversarial nets' (sec. 4.1, Fig. 2)",
    "claim": "An all-convolutional GAN with batch norm generates realistic digits, and its latent "
    "space interpolates smoothly; conditioned on a one-hot label, it generates the digit asked "
    "for.",
    "published": {
        "cgan_parzen_log_likelihood": 132,  # Mirza & Osindero Table 1 (MLP cGAN; +- 1.8)
        "label_accuracy": "not reported (samples shown, Fig. 2)",
        "fid": "not reported (samples shown)",
    },
    "bars": {
        "smoke": "none (plumbing on synthetic IDX files)",
        "quick": "cGAN label accuracy >= 70%; untrained / trained MNIST FID >= 5 (both GANs)",
        "full": "cGAN label accuracy >= 95%; untrained / trained MNIST FID >= 5 (both GANs)",
    },
}
ACCURACY_BAR = {"quick": 0.70, "full": 0.95}
FID_RATIO_BAR = 5.0


def get_config(scale: str = "quick") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.scale = scale  # selects the bars and the scorer (see PAPER, experiments/_scorer.py)
    c.seed = 0  # init, z draws, data order
    c.data_dir = ""  # data root; "" = $DL_DATA_DIR, else <repo>/data, else ../shared/data
    c.scorer_dir = ""  # cache of the MNIST scorer; "" = <workdir>/../../_mnist_scorer
    c.latent = 100  # z size (the paper's 100)
    # G's maps at 7x7 and 14x14, D's at 14x14 and 7x7: the paper's widths are far larger;
    # quick uses narrow nets so that both GANs train in about a minute on 2 cores.
    c.g_channels = {"smoke": (2, 2), "quick": (32, 16), "full": (128, 64)}[scale]
    c.d_channels = {"smoke": (2, 2), "quick": (16, 32), "full": (64, 128)}[scale]
    c.models = ("unconditional", "conditional")  # the GANs trained (tests train one)
    c.d_batch_norm = True  # batch norm on D's second conv (the paper: every layer but the input)
    # D's label input: "projection" or "concat" (one-hot planes). Measured at quick: concat let
    # D win outright (mean D(fake) 0.001 at step 600, label accuracy 16%; 12% without D's batch
    # norm); projection reached 37% at step 600 and 83% at step 1500.
    c.conditioning = "projection"
    c.sample_mode = "batch"  # G's batch norm when sampling: "batch" or "running" (generate)
    c.generator_loss = "nonsaturating"  # or "minimax" (saturates early; Goodfellow et al.)
    c.learning_rate = 2e-4  # Adam, both players (the paper's)
    c.beta1 = 0.5  # Adam's b1 (the paper's: 0.9 oscillated)
    c.batch_size = {"smoke": 8, "quick": 64, "full": 128}[scale]  # real images per step
    c.num_steps = {"smoke": 3, "quick": 1500, "full": 10000}[scale]  # D+G steps per GAN
    c.num_eval = {"smoke": 20, "quick": 2000, "full": 10000}[scale]  # samples scored (and tests)
    c.checkpoint_every = {"smoke": 0, "quick": 0, "full": 1000}[scale]  # steps (0 = at the end)
    c.log_every = {"smoke": 1, "quick": 50, "full": 100}[scale]  # steps between metric rows
    c.interpolation_pairs = {"smoke": 2, "quick": 5, "full": 5}[scale]  # rows of the picture
    c.interpolation_steps = {"smoke": 3, "quick": 10, "full": 10}[scale]  # images per row
    c.progress = scale != "smoke"  # progress bar (off in the smoke tests)
    return c


FIELDS = {
    "scale": Choice(SCALES),
    "seed": SEED,
    "data_dir": DATA_DIR,
    "scorer_dir": Dir(),
    "latent": Int(lo=1),
    "g_channels": Tuple((Int(lo=1), Int(lo=1))),
    "d_channels": Tuple((Int(lo=1), Int(lo=1))),
    "models": Tuple(Choice(("unconditional", "conditional")), max_len=2),
    "d_batch_norm": Bool(),
    "conditioning": Choice(("concat", "projection")),
    "sample_mode": Choice(("batch", "running")),
    "generator_loss": Choice(("nonsaturating", "minimax")),
    "learning_rate": Float(lo=0.0, lo_open=True),
    "beta1": Float(0.0, 1.0, hi_open=True),
    "batch_size": Int(lo=2),  # batch norm needs 2 or more
    "num_steps": Int(lo=1),
    "num_eval": Int(lo=2),  # a covariance needs 2 or more samples
    "checkpoint_every": Int(lo=0),
    "log_every": Int(lo=1),
    "interpolation_pairs": Int(lo=1),
    "interpolation_steps": Int(lo=2),
    "progress": Bool(),
}


def build(config, conditional: bool) -> tuple[Generator, Discriminator]:
    classes = 10 if conditional else 0
    g = Generator(channels=tuple(config.g_channels), classes=classes, output="tanh")
    d = Discriminator(
        channels=tuple(config.d_channels),
        classes=classes,
        conditioning=config.conditioning,
        batch_norm=config.d_batch_norm,
    )
    return g, d


def init_gan(config, g, d, conditional: bool, sample_x: np.ndarray) -> adversarial.GANState:
    key = jax.random.PRNGKey(config.seed)
    kg, kd, kstate = jax.random.split(key, 3)
    n = sample_x.shape[0]
    y = (jnp.zeros((n,), jnp.int32),) if conditional else ()
    g_init = jax.jit(functools.partial(g.init, train=False))  # one compile, not one per op
    d_init = jax.jit(functools.partial(d.init, train=False))
    gv = dict(g_init(kg, jnp.zeros((n, config.latent), jnp.float32), *y))
    dv = dict(d_init(kd, jnp.asarray(sample_x), *y))
    tx = adam(config.learning_rate, b1=config.beta1, b2=0.999)
    return adversarial.create(
        d_apply=d.apply,
        d_params=dv.pop("params"),
        d_tx=tx,
        g_apply=g.apply,
        g_params=gv.pop("params"),
        g_tx=tx,
        rng=kstate,
        d_extra=dv,
        g_extra=gv,
    )


@functools.cache
def _sampler(g: Generator, mode: str):
    def sample(v, zb, *yb):
        if mode == "batch":  # normalize with this sample batch's statistics, then drop them
            x, _ = g.apply(v, zb, *yb, train=True, mutable=["batch_stats"])
        else:
            x = g.apply(v, zb, *yb, train=False)
        return (x + 1.0) / 2.0

    return jax.jit(sample)


def generate(
    g, g_state, z: np.ndarray, y: np.ndarray | None, *, mode: str, batch: int = 500
) -> np.ndarray:
    """Samples in [0, 1], [n, 28, 28, 1]. mode "batch": batch norm with the statistics of each
    sample batch of `batch` (as the reference PyTorch DCGAN samples: its G is never put in eval
    mode); "running": with the running averages from training."""
    variables = {"params": g_state.params, **g_state.extra}
    fn = _sampler(g, mode)
    out = []
    for i in range(0, len(z), batch):
        args = () if y is None else (y[i : i + batch],)
        out.append(np.asarray(fn(variables, z[i : i + batch], *args)))
    return np.concatenate(out)


def interpolation(config, g, g_state, conditional: bool) -> np.ndarray:
    """Linear paths z = (1 - t) z_a + t z_b, t in [0, 1]: [pairs * steps, 28, 28, 1] (a
    conditional G keeps row r's label r mod 10 fixed along the path)."""
    key = jax.random.PRNGKey(config.seed + 7)
    pairs, steps = config.interpolation_pairs, config.interpolation_steps
    ends = np.asarray(sample_latent(key, 2 * pairs, config.latent))
    a, b = ends[0::2], ends[1::2]
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[None, :, None]
    z = ((1 - t) * a[:, None] + t * b[:, None]).reshape(-1, config.latent)
    y = np.repeat(np.arange(pairs) % 10, steps).astype(np.int32) if conditional else None
    return generate(g, g_state, z, y, mode=config.sample_mode)


def train_gan(config, splits, workdir: str, conditional: bool, scorer) -> dict:
    name = "conditional" if conditional else "unconditional"
    train = splits["train"]
    scaled = data.ArrayData(train.x * 2.0 - 1.0, train.y)  # tanh's range
    loader = data.Loader(scaled, config.batch_size, seed=config.seed)
    g, d = build(config, conditional)
    state = init_gan(config, g, d, conditional, scaled.x[: config.batch_size])
    n = config.num_eval
    z = np.asarray(sample_latent(jax.random.PRNGKey(config.seed + 1), n, config.latent))
    y = (np.arange(n) % 10).astype(np.int32) if conditional else None
    test = splits["test"].x[:n]
    untrained = generate(g, state.g, z, y, mode=config.sample_mode)
    untrained_fid = feature_fid(scorer.features, test, untrained)
    d_loss, g_loss = dcgan_losses(
        g, d, latent=config.latent, conditional=conditional, generator_loss=config.generator_loss
    )
    os.makedirs(f"{workdir}/{name}", exist_ok=True)
    state, history, _ = adversarial.train(
        state,
        train_step=adversarial.jit_adversarial_step(d_loss, g_loss),
        batch_fn=loader.batch,
        num_steps=config.num_steps,
        workdir=f"{workdir}/{name}",
        checkpoint_every=config.checkpoint_every,
        resume=config.get("resume", False),
        log_every=config.log_every,
        progress=config.progress,
        desc=name,
    )
    samples = generate(g, state.g, z, y, mode=config.sample_mode)
    out = {f"{name}_fid": feature_fid(scorer.features, test, samples)}
    out[f"{name}_untrained_fid"] = untrained_fid
    out[f"{name}_fid_ratio"] = untrained_fid / max(out[f"{name}_fid"], 1e-12)
    plots.learning_curves(
        history,
        f"{workdir}/curves_{name}.png",
        keys=("d_loss", "g_loss", "d_real_prob", "d_fake_prob"),
        title=f"DCGAN ({name})",
    )
    shown = min(100 if conditional else 64, n)
    titles = None
    if conditional:
        scores = label_accuracy(scorer.predict, samples, y, classes=10)
        out["label_accuracy"] = scores["accuracy"]
        out["label_accuracy_per_class"] = scores["per_class"]
        other = "running" if config.sample_mode == "batch" else "batch"  # for comparison
        again = generate(g, state.g, z, y, mode=other)
        out[f"label_accuracy_{other}_stats"] = label_accuracy(scorer.predict, again, y, classes=10)[
            "accuracy"
        ]
        pred = batched_features(scorer.predict, samples[:shown])
        titles = [f"{y[i]}:{pred[i]}" for i in range(shown)]
    image_grid(
        samples[:shown],
        f"{workdir}/samples_{name}.png",
        cols=10 if conditional else 8,
        titles=titles,
        normalize="none",
        title=f"DCGAN {name} samples" + (" (asked:scored)" if conditional else ""),
    )
    if name == config.models[0]:
        image_grid(
            interpolation(config, g, state.g, conditional),
            f"{workdir}/interpolation.png",
            cols=config.interpolation_steps,
            normalize="none",
            title=f"{name} G: linear interpolation between two latents (each row)",
        )
    return out


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    splits = data.load("mnist", data_dir=config.data_dir or None, flatten=False)
    root = config.scorer_dir or _scorer.default_root(workdir)
    scorer = _scorer.get_scorer(splits, scale=config.scale, root=root, progress=config.progress)
    metrics = {
        "scorer_test_accuracy": scorer.test_accuracy,
        "scorer_cached": not scorer.trained_now,
    }
    for name in config.models:
        metrics.update(train_gan(config, splits, workdir, name == "conditional", scorer))
    bars = []
    if config.scale in ACCURACY_BAR:
        if "conditional" in config.models:
            bars.append(
                at_least(
                    "cGAN label accuracy",
                    metrics["label_accuracy"],
                    ACCURACY_BAR[config.scale],
                    paper="not reported",
                )
            )
        for name in config.models:
            bars.append(
                at_least(
                    f"{name} untrained / trained MNIST FID",
                    metrics[f"{name}_fid_ratio"],
                    FID_RATIO_BAR,
                    paper="not reported",
                )
            )
    metrics["bars"] = bars
    return metrics
