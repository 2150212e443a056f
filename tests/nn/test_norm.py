"""BatchNorm against torch.nn.BatchNorm2d (values, gradients, running statistics, eval mode),
the exact momentum/variance mapping to flax's nn.BatchNorm, SpatialDropout's channel masks,
the engine carrying batch statistics in `state.extra`, and 8 simulated devices equal to 1
(with on-device augmentation in the step)."""

import json
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dl.nn.norm import BatchNorm, SpatialDropout, standardize
from dl.nn.pool import max_pool
from dl.objectives.classification import classifier_loss
from dl.ops.gradcheck import gradcheck
from dl.train.step import jit_train_step
from dl.train.supervised import init_state

torch = pytest.importorskip("torch")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _nchw(x):
    return torch.tensor(np.asarray(x)).permute(0, 3, 1, 2).contiguous()


def _nhwc(t):
    return t.detach().permute(0, 2, 3, 1).numpy()


def _batches(steps=3, shape=(4, 5, 6, 3)):
    rng = np.random.default_rng(0)
    return [(rng.normal(size=shape) * (1 + i) + i).astype(np.float32) for i in range(steps)]


def _affine(c):
    rng = np.random.default_rng(1)
    return rng.normal(size=c).astype(np.float32), rng.normal(size=c).astype(np.float32)


def test_train_eval_and_running_stats_equal_torch_batchnorm2d():
    xs = _batches()
    scale, bias = _affine(3)
    bn = torch.nn.BatchNorm2d(3, momentum=0.1, eps=1e-5)  # torch 0.1 == ours 0.9
    with torch.no_grad():
        bn.weight.copy_(torch.tensor(scale))
        bn.bias.copy_(torch.tensor(bias))
    model = BatchNorm(momentum=0.9)
    v = model.init(jax.random.PRNGKey(0), xs[0], train=False)
    v = {**v, "params": {"scale": jnp.asarray(scale), "bias": jnp.asarray(bias)}}
    step = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))
    for x in xs:
        bn.train()
        want = bn(_nchw(x))
        y, upd = step(v, x)
        v = {**v, **upd}
        np.testing.assert_allclose(y, _nhwc(want), rtol=1e-5, atol=1e-5)
        stats = v["batch_stats"]
        np.testing.assert_allclose(stats["mean"], bn.running_mean.numpy(), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(stats["var"], bn.running_var.numpy(), rtol=1e-6, atol=1e-6)
    bn.eval()
    x = xs[0] - 1.0
    np.testing.assert_allclose(
        model.apply(v, x, train=False), _nhwc(bn(_nchw(x))), rtol=1e-5, atol=1e-5
    )


def test_train_mode_gradients_equal_torch():
    (x,) = _batches(1)
    scale, bias = _affine(3)
    g = np.random.default_rng(2).normal(size=x.shape).astype(np.float32)
    bn = torch.nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor(scale))
        bn.bias.copy_(torch.tensor(bias))
    xt = _nchw(x).requires_grad_(True)
    bn(xt).backward(_nchw(g))
    model = BatchNorm()

    def f(params, x):
        return model.apply({"params": params}, x, train=True, mutable=["batch_stats"])[0]

    _, pull = jax.vjp(f, {"scale": jnp.asarray(scale), "bias": jnp.asarray(bias)}, x)
    dp, dx = pull(jnp.asarray(g))
    np.testing.assert_allclose(dx, _nhwc(xt.grad), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dp["scale"], bn.weight.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dp["bias"], bn.bias.grad.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(3, 4, 5, 2), (7, 3), (2, 1, 3, 4, 2)])
def test_standardize_gradients_pass_gradcheck(shape):
    # All three outputs enter the loss, so the statistics' own gradient paths are checked too.
    rng = np.random.default_rng(2)
    x = rng.normal(size=shape) * 3 + 1
    w, wm, wv = rng.normal(size=shape), rng.normal(size=shape[-1]), rng.normal(size=shape[-1])

    def loss(x):
        xhat, mean, var = standardize(x, 1e-5)
        return jnp.sum(jnp.sin(xhat) * w) + jnp.sum(mean * wm) + jnp.sum(jnp.sqrt(var) * wv)

    errors = gradcheck(loss, x)
    assert errors < 1e-7, errors


def test_fused_batchnorm_equals_autodiff_in_values_gradients_and_statistics():
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(6, 5, 4, 3)) * 2 - 1, jnp.float32)
    w = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
    out = {}
    for fused in (True, False):
        model = BatchNorm(fused=fused)
        v = model.init(jax.random.PRNGKey(0), x, train=True)
        params = {"scale": jnp.asarray([1.5, -0.5, 2.0]), "bias": jnp.asarray([0.1, 0.2, -0.3])}

        def loss(params, x, model=model, v=v):
            y, upd = model.apply({**v, "params": params}, x, train=True, mutable=["batch_stats"])
            return jnp.sum(jnp.tanh(y) * w), upd

        (value, upd), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(
            params, x
        )
        out[fused] = (value, upd, grads)
    np.testing.assert_allclose(out[True][0], out[False][0], rtol=1e-6)
    for a, b in zip(jax.tree.leaves(out[True][1:]), jax.tree.leaves(out[False][1:])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_momentum_and_variance_mapping_to_flax_batchnorm():
    """Flax's nn.BatchNorm(momentum=1 - m) keeps PyTorch's running mean and the biased running
    variance: torch_var - (1 - m)^T = n / (n - 1) * (flax_var - momentum^T) after T steps."""
    xs = _batches(4)
    n = int(np.prod(xs[0].shape[:-1]))
    m = 0.1
    bn = torch.nn.BatchNorm2d(3, momentum=m, affine=False)
    ours = BatchNorm(momentum=1 - m, unbiased_running_var=False, use_scale=False, use_bias=False)
    flax_bn = nn.BatchNorm(use_running_average=False, momentum=1 - m, epsilon=1e-5)
    vf = flax_bn.init(jax.random.PRNGKey(0), xs[0])
    vo = ours.init(jax.random.PRNGKey(0), xs[0], train=False)
    for x in xs:
        bn(_nchw(x))
        yf, upd = flax_bn.apply(vf, x, mutable=["batch_stats"])
        vf = {**vf, **upd}
        yo, upd = ours.apply(vo, x, train=True, mutable=["batch_stats"])
        vo = {**vo, **upd}
        np.testing.assert_allclose(yo, yf, rtol=1e-4, atol=1e-4)
    t = len(xs)
    sf, so = vf["batch_stats"], vo["batch_stats"]
    np.testing.assert_allclose(sf["mean"], bn.running_mean.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(so["mean"], bn.running_mean.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(so["var"], sf["var"], rtol=1e-5)
    lhs = bn.running_var.numpy() - (1 - m) ** t
    np.testing.assert_allclose(lhs, n / (n - 1) * (np.asarray(sf["var"]) - (1 - m) ** t), rtol=1e-5)


def test_eval_normalizes_with_running_stats():
    x = _batches(1)[0]
    model = BatchNorm()
    stats = {"mean": jnp.array([1.0, -2.0, 0.5]), "var": jnp.array([4.0, 0.25, 1.0])}
    scale, bias = _affine(3)
    v = {"params": {"scale": scale, "bias": bias}, "batch_stats": stats}
    y = model.apply(v, x, train=False)  # not mutable: eval must not write the statistics
    want = (x - np.asarray(stats["mean"])) / np.sqrt(np.asarray(stats["var"]) + 1e-5)
    np.testing.assert_allclose(y, want * scale + bias, rtol=1e-5, atol=1e-5)


def test_statistics_reduce_over_every_leading_axis():
    x = jnp.asarray(_batches(1, (2, 3, 4, 4, 5))[0])
    model = BatchNorm()
    v = model.init(jax.random.PRNGKey(0), x, train=False)
    np.testing.assert_array_equal(v["batch_stats"]["mean"], 0.0)  # init updates nothing
    np.testing.assert_array_equal(v["batch_stats"]["var"], 1.0)
    y, a = model.apply(v, x, train=True, mutable=["batch_stats"])
    yf, b = model.apply(v, x.reshape(-1, 5), train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(y.reshape(-1, 5), yf, rtol=1e-6, atol=1e-6)
    for k in ("mean", "var"):
        np.testing.assert_allclose(a["batch_stats"][k], b["batch_stats"][k], rtol=1e-6)
    with pytest.raises(ValueError, match="more than 1 value"):
        model.apply(v, x[:1, 0, :1, :1].reshape(1, 5), train=True, mutable=["batch_stats"])


def test_spatial_dropout_drops_whole_channel_maps():
    x = jnp.ones((6, 5, 4, 16))
    model = SpatialDropout(0.5)
    np.testing.assert_array_equal(model.apply({}, x, train=False), x)
    y = np.asarray(model.apply({}, x, train=True, rngs={"dropout": jax.random.PRNGKey(0)}))
    per_map = y.reshape(6, 20, 16)
    assert np.all(per_map == per_map[:, :1])  # one draw per (example, channel)
    assert set(np.unique(per_map)) == {0.0, 2.0}  # kept maps scaled by 1 / (1 - rate)
    assert 0.3 < np.mean(per_map[:, 0] == 0) < 0.7


def _conv():
    """The conv layer: the codebase's own if present, else flax's (same call signature here)."""
    try:
        from dl.nn.conv import Conv
    except ImportError:
        Conv = nn.Conv
    return Conv


class ConvBNNet(nn.Module):
    """[B, 8, 8, 1] -> [B, 3]: conv 3x3 -> BatchNorm -> relu -> SpatialDropout -> max pool 2 ->
    dropout -> dense."""

    @nn.compact
    def __call__(self, x, *, train=False):
        x = _conv()(8, (3, 3), padding=1, use_bias=False, name="conv")(x)  # BN adds the bias
        x = nn.relu(BatchNorm(name="bn")(x, train=train))
        x = SpatialDropout(0.2)(x, train=train)
        x = max_pool(x, 2).reshape(x.shape[0], -1)
        x = nn.Dropout(0.3, deterministic=not train)(x)
        return nn.Dense(3, name="head")(x)


def test_engine_train_step_stores_batch_stats_in_extra():
    rng = np.random.default_rng(0)
    batch = {
        "x": rng.normal(size=(8, 8, 8, 1)).astype(np.float32) + 2.0,
        "y": rng.integers(0, 3, 8).astype(np.int32),
        "mask": np.ones(8, np.float32),
    }
    model = ConvBNNet()
    state = init_state(model, optax.sgd(0.1), batch["x"], seed=0)
    assert set(state.extra) == {"batch_stats"}
    conv = _conv()(
        8, (3, 3), padding=1, use_bias=False
    )  # the features the BatchNorm sees, at the initial params
    feats = conv.apply({"params": state.params["conv"]}, batch["x"])
    new, metrics = jit_train_step(classifier_loss(model))(state, batch)
    stats = new.extra["batch_stats"]["bn"]
    np.testing.assert_allclose(stats["mean"], 0.1 * np.mean(feats, (0, 1, 2)), rtol=1e-5)
    assert np.isfinite(float(metrics["loss"]))


MESH_RUN = """
import json, sys
import jax, numpy as np, optax
from flax import traverse_util
from dl.data import ArrayData, Loader, eval_batches
from dl.data.augment import with_augmentation
from dl.objectives.classification import classifier_eval, classifier_loss
from dl.train.supervised import fit, init_state
sys.path.insert(0, "tests/nn")
from test_norm import ConvBNNet

rng = np.random.default_rng(0)
data = ArrayData(rng.normal(size=(64, 8, 8, 1)).astype(np.float32),
                 rng.integers(0, 3, 64).astype(np.int32))
model = ConvBNNet()
state = init_state(model, optax.sgd(0.1, momentum=0.9), data.x[:16], seed=0)
# Augmentation inside the jitted step, on the sharded batch: crops, flips, rotations, elastic.
loss_fn = with_augmentation(classifier_loss(model), crop_pad=1, flip=True, max_degrees=10.0,
                            elastic_alpha=2.0, elastic_sigma=2.0)
state, _, _ = fit(state, loss_fn=loss_fn, eval_fn=classifier_eval(model),
                  train_loader=Loader(data, 16, seed=0), val_batches=lambda: eval_batches(data, 16),
                  num_steps=6, workdir=sys.argv[1], eval_every=0, progress=False, log_every=1)
flat = traverse_util.flatten_dict({"params": state.params, **state.extra}, sep="/")
np.savez(sys.argv[1] + "/state.npz", **{k: np.asarray(v) for k, v in flat.items()})
print("devices", jax.device_count())
"""


def _run(workdir, devices):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT}
    if devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    p = subprocess.run(
        [sys.executable, "-c", MESH_RUN, str(workdir)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert p.returncode == 0, p.stderr[-4000:]
    assert f"devices {devices}" in p.stdout
    with open(workdir / "metrics.jsonl") as f:
        rows = [json.loads(line) for line in f]
    return dict(np.load(workdir / "state.npz")), rows


@pytest.mark.slow
def test_conv_batchnorm_dropout_augment_eight_devices_match_one(tmp_path):
    """`fit` with an augmented conv + BatchNorm + dropout net: 8 simulated devices (2 rows each)
    equal 1 device, since batch statistics are means over the global, sharded batch."""
    (tmp_path / "one").mkdir()
    (tmp_path / "eight").mkdir()
    one, rows1 = _run(tmp_path / "one", 1)
    eight, rows8 = _run(tmp_path / "eight", 8)
    assert set(one) == set(eight) and any(k.startswith("batch_stats/") for k in one)
    for k in one:  # params and running statistics after 6 steps on a 16-row batch, 2 per device
        np.testing.assert_allclose(eight[k], one[k], rtol=1e-5, atol=1e-5, err_msg=k)
    assert [r.keys() for r in rows1] == [r.keys() for r in rows8]
    for a, b in zip(rows1, rows8):  # each step's loss and norms, and the final evaluation
        for k in a:
            np.testing.assert_allclose(
                b[k], a[k], rtol=1e-5, atol=1e-6, err_msg=f"{k} @ {a['step']}"
            )
