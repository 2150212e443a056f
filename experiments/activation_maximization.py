"""What an MNIST CNN has learned: class models and conv-unit maximization by gradient ascent on
the input (Erhan et al. 2009; Simonyan et al. 2014), first-layer filters, and saliency maps
checked by a deletion test.

Run:    python run.py activation_maximization --scale quick
Expect: quick (MnistCNN 16/32 maps, 256 units, 1 epoch of Adam): test accuracy 98.15%; every
        class model's softmax probability >= 0.99999 (bar 0.99); zeroing the 10% most salient
        pixels beats a random 10% on 98.6% of 500 test images (bar 90%; mean true-class
        probability 0.96 -> 0.41 salient vs 0.95 random). 87 CPU s (69 user + 18 sys); 4:21
        wall on the shared 2-core machine at load 11-14, about 45-60 s quiet. The papers
        publish pictures, not numbers: the bars check their claims. Full: not run.
Pictures: class_models.png, units_conv_{0,1}.png, filters_conv_0.png, saliency.png.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from dl import data, optim
from dl.eval.attribution import deletion_test, gradient_ascent, saliency
from dl.models.cnn import MnistCNN
from dl.objectives.classification import classifier_eval, classifier_loss
from dl.report import at_least, plots
from dl.report.grids import image_grid
from dl.train.supervised import fit, init_state
from experiments._fields import DATA_DIR, SCALES, SEED, Bool, Choice, Float, Int, Tuple

PAPER = {
    "citation": "Erhan, Bengio, Courville & Vincent 2009, 'Visualizing higher-layer features of "
    "a deep network' (activation maximization); Simonyan, Vedaldi & Zisserman 2014, 'Deep inside "
    "convolutional networks: visualising image classification models and saliency maps' "
    "(class models, eq. 1; image-specific saliency, sec. 3)",
    "claim": "Gradient ascent on the input with an L2 penalty finds inputs that the net "
    "classifies with near certainty and that show what each class or unit responds to; the "
    "input gradient |d score / d x| of a test image locates the pixels its class score uses.",
    "published": {"note": "qualitative figures (no numbers); our bars are checks of the claims"},
    "bars": {
        "smoke": "none (plumbing on synthetic IDX files)",
        "quick": "every class model's softmax probability of its class >= 0.99; zeroing the 10% "
        "most salient pixels lowers the true-class probability more than zeroing a random 10% "
        "on >= 90% of 500 test images",
        "full": "as quick, on the full-width MnistCNN trained for 10 epochs",
    },
}
PROB_BAR = 0.99
DELETION_BAR = 0.90


def get_config(scale: str = "quick") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.scale = scale  # selects the bar (see PAPER)
    c.seed = 0  # init, data order, ascent starts and jitter, random deletions
    c.data_dir = ""  # data root; "" = $DL_DATA_DIR, else <repo>/data, else ../shared/data
    # MnistCNN widths: the tutorial's (32, 64) maps and 1024 units at full; quick halves the maps
    # and uses 256 units so that training fits in about a minute on 2 cores.
    c.channels = {"smoke": (4, 8), "quick": (16, 32), "full": (32, 64)}[scale]
    c.hidden = {"smoke": 16, "quick": 256, "full": 1024}[scale]
    c.learning_rate = 1e-3  # Adam
    c.batch_size = {"smoke": 16, "quick": 128, "full": 128}[scale]
    c.num_epochs = {"smoke": 1, "quick": 1, "full": 10}[scale]  # 1 epoch is ~98-99% already
    c.max_steps = {"smoke": 4, "quick": 0, "full": 0}[scale]  # cap on steps (0 = no cap)
    c.checkpoint_every_epochs = 1  # orbax checkpoints for --resume
    # Class models: "logit" ascends the unnormalized score S_c (Simonyan et al.: maximizing the
    # softmax can be done by pushing the other scores down); "log_softmax" ascends log p_c.
    c.objective = "logit"
    c.ascent_steps = {"smoke": 5, "quick": 200, "full": 500}[scale]  # gradient-ascent steps
    c.ascent_lr = 0.05  # ascent step size on pixels in [0, 1]
    c.l2 = 0.05  # L2 penalty weight (Simonyan et al.'s lambda)
    c.jitter = 2  # random circular shift of up to 2 pixels each step (DeepDream's jitter)
    c.units_per_layer = {"smoke": 4, "quick": 16, "full": 32}[scale]  # channels shown per conv
    c.num_saliency = {"smoke": 20, "quick": 500, "full": 500}[scale]  # test images in the test
    c.delete_fraction = 0.1  # share of pixels zeroed in the deletion test
    c.progress = scale != "smoke"  # progress bar (off in the smoke tests)
    return c


FIELDS = {
    "scale": Choice(SCALES),
    "seed": SEED,
    "data_dir": DATA_DIR,
    "channels": Tuple((Int(lo=1), Int(lo=1))),
    "hidden": Int(lo=1),
    "learning_rate": Float(lo=0.0, lo_open=True),
    "batch_size": Int(lo=1),
    "num_epochs": Int(lo=1),
    "max_steps": Int(lo=0),
    "checkpoint_every_epochs": Int(lo=0),
    "objective": Choice(("logit", "log_softmax")),
    "ascent_steps": Int(lo=1),
    "ascent_lr": Float(lo=0.0, lo_open=True),
    "l2": Float(lo=0.0),
    "jitter": Int(0, 13),
    "units_per_layer": Int(lo=1),
    "num_saliency": Int(lo=1),
    "delete_fraction": Float(0.0, 1.0, lo_open=True, hi_open=True),
    "progress": Bool(),
}


def train_cnn(model, splits, config, workdir):
    train = splits["train"]
    loader = data.Loader(train, config.batch_size, seed=config.seed)
    num_steps = config.num_epochs * loader.steps_per_epoch
    if config.max_steps:
        num_steps = min(num_steps, config.max_steps)
    state = init_state(
        model, optim.adam(config.learning_rate), train.x[: config.batch_size], seed=config.seed
    )
    _, history, summary = fit(
        state,
        loss_fn=classifier_loss(model),
        eval_fn=classifier_eval(model),
        train_loader=loader,
        val_batches=lambda: data.eval_batches(splits["val"], 1000),
        num_steps=num_steps,
        workdir=f"{workdir}/cnn",
        eval_every=num_steps,
        checkpoint_every=config.checkpoint_every_epochs * loader.steps_per_epoch,
        resume=config.get("resume", False),
        progress=config.progress,
        desc="cnn",
    )
    plots.learning_curves(history, f"{workdir}/cnn_curves.png", title="MnistCNN")
    params = summary["best_params"]
    test = summary["evaluate"](params, data.eval_batches(splits["test"], 1000))
    return jax.device_get(params), test["accuracy"]


def ascend(objective_of, count, config, key):
    """`gradient_ascent` of objective_of(i) for i < count, all vmapped in one jitted loop;
    returns (inputs [count, 28, 28, 1], objective traces [count, steps])."""
    starts = 0.5 + 0.01 * jax.random.normal(jax.random.fold_in(key, 0), (count, 28, 28, 1))

    @jax.jit
    def solve_all(starts, keys):
        def one(i, x0, k):
            return gradient_ascent(
                objective_of(i),
                x0,
                steps=config.ascent_steps,
                learning_rate=config.ascent_lr,
                l2=config.l2,
                jitter=config.jitter,
                key=k,
                bounds=(0.0, 1.0),
            )

        return jax.vmap(one)(jnp.arange(count), starts, keys)

    return solve_all(starts, jax.random.split(jax.random.fold_in(key, 1), count))


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    splits = data.load("mnist", data_dir=config.data_dir or None, flatten=False)
    os.makedirs(workdir, exist_ok=True)
    model = MnistCNN(channels=tuple(config.channels), hidden=config.hidden)
    params, test_acc = train_cnn(model, splits, config, workdir)
    variables = {"params": params}
    key = jax.random.PRNGKey(config.seed)

    def logits_fn(x):  # [B, 28, 28, 1] -> [B, 10]
        return model.apply(variables, x)

    # Class models: all 10 classes in one vmapped ascent.
    def class_objective(c):
        def f(x):
            scores = logits_fn(x[None])[0]
            if config.objective == "log_softmax":
                scores = jax.nn.log_softmax(scores)
            return scores[c]

        return f

    class_inputs, class_traces = ascend(class_objective, 10, config, jax.random.fold_in(key, 10))
    probs = np.asarray(jax.nn.softmax(logits_fn(class_inputs), axis=-1))
    own_prob = probs[np.arange(10), np.arange(10)]
    image_grid(
        np.asarray(class_inputs),
        f"{workdir}/class_models.png",
        normalize="none",
        titles=[f"{c}: p={own_prob[c]:.3f}" for c in range(10)],
        title=f"class models ({config.objective}, L2 {config.l2:g}, jitter {config.jitter})",
    )
    steps = np.arange(config.ascent_steps)
    plots.curves(
        {f"class {c}": (steps, np.asarray(class_traces[c])) for c in range(10)},
        f"{workdir}/class_ascent.png",
        xlabel="ascent step",
        ylabel=config.objective,
        title="class-model objective during the ascent",
    )

    # Conv units: the spatial sum of each channel's (pre-ReLU) output, per conv layer (a sum,
    # not a mean, so that the step size suits class scores and units alike).
    unit_act = {}
    for layer in range(len(config.channels)):
        n = min(config.units_per_layer, config.channels[layer])

        def conv_out(x, layer=layer):
            _, inter = model.apply(
                variables, x[None], capture_intermediates=True, mutable=["intermediates"]
            )
            return inter["intermediates"][f"conv_{layer}"]["__call__"][0][0]  # [h, w, C]

        def unit_objective(u, conv_out=conv_out):
            return lambda x: jnp.sum(conv_out(x)[..., u])

        unit_inputs, traces = ascend(unit_objective, n, config, jax.random.fold_in(key, 20 + layer))
        unit_act[f"conv_{layer}"] = float(np.mean(np.asarray(traces)[:, -1]))
        image_grid(
            np.asarray(unit_inputs),
            f"{workdir}/units_conv_{layer}.png",
            cols=8,
            normalize="none",
            titles=[f"unit {u}" for u in range(n)],
            title=f"inputs maximizing conv_{layer} units (spatial sum, pre-ReLU)",
        )

    # First-layer filters: conv_0's 5x5 kernels (HWIO, one input channel).
    kernel = np.asarray(params["conv_0"]["kernel"])[:, :, 0, :].transpose(2, 0, 1)
    image_grid(
        kernel, f"{workdir}/filters_conv_0.png", cols=8, cmap="bwr", title="first-layer 5x5 filters"
    )

    # Saliency of test images and the deletion test.
    test = splits["test"]
    count = min(config.num_saliency, len(test.y))
    x = jnp.asarray(test.x[:count])
    y = jnp.asarray(test.y[:count], jnp.int32)
    sal = jax.jit(lambda x, y: saliency(logits_fn, x, y))(x, y)
    out = jax.jit(
        lambda x, y, s, k: deletion_test(
            lambda z: jax.nn.softmax(logits_fn(z), axis=-1),
            x,
            y,
            s,
            fraction=config.delete_fraction,
            key=k,
        )
    )(x, y, sal, jax.random.fold_in(key, 30))
    wins = float(np.mean(np.asarray(out["salient_wins"])))
    show = min(10, count)
    image_grid(
        np.concatenate([np.asarray(x[:show, ..., 0]), np.asarray(sal[:show])]),
        f"{workdir}/saliency.png",
        cols=show,
        titles=[f"label {int(v)}" for v in y[:show]] + ["|dS/dx|"] * show,
        title="test digits (top) and saliency |d logit_true / d x| (bottom)",
    )
    metrics = {
        "test_accuracy": float(test_acc),
        "class_model_prob": {str(c): float(p) for c, p in enumerate(own_prob)},
        "min_class_model_prob": float(own_prob.min()),
        "unit_activation_sum": unit_act,
        "deletion_salient_wins": wins,
        "deletion_mean_prob": {
            k: float(np.mean(np.asarray(out[k]))) for k in ("original", "salient", "random")
        },
        "deletion_images": count,
    }
    bars = []
    if config.scale in ("quick", "full"):
        bars = [
            at_least("min class-model softmax prob", own_prob.min(), PROB_BAR, paper="—"),
            at_least("salient deletion beats random (share)", wins, DELETION_BAR, paper="—"),
        ]
    metrics["bars"] = bars
    return metrics
