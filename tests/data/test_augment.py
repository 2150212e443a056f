"""On-device augmentation: identities, exact integer shifts, np.rot90, scipy's bilinear
resampling and Gaussian filter, elastic fields tending to a translation, jit vs eager, vmap,
and determinism in (seed, step) through the engine."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.ndimage as ndi

from dl.data import augment as aug
from dl.train.state import TrainState
from dl.train.step import jit_train_step


def _image(shape=(10, 10, 2), border=0, seed=0):
    im = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    if border:
        im[:border], im[-border:], im[:, :border], im[:, -border:] = 0, 0, 0, 0
    return im


KEY = jax.random.PRNGKey(0)


def test_zero_settings_are_the_identity_exactly():
    im = _image((9, 7, 3))
    np.testing.assert_array_equal(aug.rotate(im, 0.0), im)
    np.testing.assert_array_equal(aug.shift(im, 0, 0), im)
    np.testing.assert_array_equal(aug.elastic(KEY, im, alpha=0.0), im)
    np.testing.assert_array_equal(aug.resample(im, aug._grid(9, 7)), im)
    np.testing.assert_array_equal(aug.random_crop(KEY, im, 0), im)
    np.testing.assert_array_equal(aug.augment(KEY, im), im)
    # Enabled steps at zero strength resample on the exact pixel grid: still the identity.
    np.testing.assert_array_equal(aug.augment(KEY, im, max_degrees=1e-30), im)


@pytest.mark.parametrize("dy, dx", [(2, -1), (-2, 2), (0, 1)])
def test_integer_shift_moves_the_mass_exactly(dy, dx):
    im = _image(border=2)
    want = np.roll(im, (dy, dx), axis=(0, 1))  # the zero border makes roll a shift
    out = aug.shift(im, dy, dx)
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(np.sort(np.ravel(out)), np.sort(im.ravel()))  # same pixels
    assert np.sum(np.asarray(out, np.float64)) == pytest.approx(np.sum(im, dtype=np.float64))
    # Bilinear resampling at integer offsets is exact too.
    coords = aug._grid(10, 10) - jnp.array([dy, dx], jnp.float32)[:, None, None]
    np.testing.assert_array_equal(aug.resample(im, coords), want)
    np.testing.assert_array_equal(jax.jit(aug.shift)(im, dy, dx), want)


def test_random_crop_is_a_uniform_shift_within_pad():
    im = _image(border=2)
    rolls = {
        (dy, dx): np.roll(im, (dy, dx), axis=(0, 1)) for dy in range(-2, 3) for dx in range(-2, 3)
    }
    keys = jax.random.split(KEY, 200)
    outs = np.asarray(jax.vmap(lambda k: aug.random_crop(k, im, 2))(keys))
    seen = []
    for out in outs:
        (match,) = [s for s, r in rolls.items() if np.array_equal(out, r)]
        seen.append(match)
    assert set(seen) == set(rolls)  # all 25 shifts in [-2, 2]^2 occur
    small = aug.random_crop(KEY, im, 1, size=(6, 8))
    assert small.shape == (6, 8, 2)
    with pytest.raises(ValueError, match="does not fit"):
        aug.random_crop(KEY, im, 0, size=(11, 4))


def test_flip_is_a_mirror_or_nothing():
    im = _image()
    np.testing.assert_array_equal(aug.random_flip(KEY, im, 1.0), im[:, ::-1])
    np.testing.assert_array_equal(aug.random_flip(KEY, im, 0.0), im)
    outs = jax.vmap(lambda k: aug.random_flip(k, im))(jax.random.split(KEY, 100))
    flipped = np.array([np.array_equal(o, im[:, ::-1]) for o in outs])
    kept = np.array([np.array_equal(o, im) for o in outs])
    assert np.all(flipped ^ kept) and 30 < flipped.sum() < 70


@pytest.mark.parametrize("k", [1, 2, 3])
def test_rotation_by_right_angles_is_rot90(k):
    im = _image((8, 8, 3))
    np.testing.assert_allclose(aug.rotate(im, 90.0 * k), np.rot90(im, k), atol=1e-5)


def test_bilinear_resampling_equals_scipy_map_coordinates():
    im = _image((7, 9, 2))
    coords = np.random.default_rng(1).uniform(-2.0, 10.0, size=(2, 5, 6)).astype(np.float32)
    got = aug.resample(im, jnp.asarray(coords))
    for c in range(2):  # scipy's grid-constant: interpolate towards cval outside the grid
        want = ndi.map_coordinates(im[..., c], coords, order=1, mode="grid-constant", cval=0.0)
        np.testing.assert_allclose(got[..., c], want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sigma", [0.7, 3.0, 50.0])
def test_gaussian_smoothing_equals_scipy_normalized(sigma):
    u = np.random.default_rng(2).uniform(-1, 1, (12, 9))
    want = ndi.gaussian_filter(u, sigma, mode="constant") / ndi.gaussian_filter(
        np.ones_like(u), sigma, mode="constant"
    )
    got = aug.gaussian_smooth(jnp.asarray(u, jnp.float32), sigma)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(aug.gaussian_smooth(jnp.ones((12, 9)), sigma), 1.0, rtol=1e-6)


def test_elastic_with_large_sigma_is_a_uniform_translation():
    im = _image((12, 12, 1), border=3)
    field = aug.elastic_field(KEY, (12, 12), alpha=60.0, sigma=1e4)
    d = np.asarray(field).reshape(2, -1).mean(1)
    np.testing.assert_allclose(field, d[:, None, None] * np.ones((2, 12, 12)), atol=1e-4)
    assert 0.1 < np.abs(d).max() < 3  # a visible, sub-border translation
    out = aug.elastic(KEY, im, alpha=60.0, sigma=1e4)
    # out[p] = im[p + d]: scipy's shift by -d, bilinear, zero outside.
    want = ndi.shift(im, (-d[0], -d[1], 0), order=1, mode="grid-constant", cval=0.0)
    np.testing.assert_allclose(out, want, atol=1e-4)
    small = aug.elastic_field(KEY, (12, 12), alpha=1.0, sigma=1.0)
    assert np.abs(small).max() <= 1.0 and np.std(small) > 0.05  # still a distortion


SETTINGS = {"crop_pad": 2, "flip": True, "max_degrees": 15.0, "elastic_alpha": 8.0}
_augment_batch = jax.jit(lambda b, k: aug.augment_batch(b, k, **SETTINGS))  # compiled once


def _batch():
    x = np.stack([_image(seed=i) for i in range(4)])
    return {"x": x, "y": np.random.default_rng(9).normal(size=x.shape).astype(np.float32)}


def test_same_key_same_output_under_jit_and_eager():
    im = _image()
    # Exact operations (crop offsets, flips: integer draws and copies) agree bit for bit.
    exact = functools.partial(aug.augment, crop_pad=2, flip=True)
    np.testing.assert_array_equal(jax.jit(exact)(KEY, im), exact(KEY, im))
    # Resampling agrees to float rounding: XLA fuses the arithmetic differently under jit.
    full = functools.partial(aug.augment, **SETTINGS, elastic_sigma=3.0)
    eager, jitted = full(KEY, im), jax.jit(full)(KEY, im)
    np.testing.assert_allclose(jitted, eager, atol=1e-5)
    assert not np.allclose(eager, im, atol=1e-2)  # it really augmented
    assert not np.allclose(full(jax.random.PRNGKey(1), im), eager, atol=1e-2)


def test_augment_batch_is_per_example_augment_and_vmaps():
    batch = _batch()
    x = batch["x"]
    out = _augment_batch(batch, KEY)
    np.testing.assert_array_equal(out["y"], batch["y"])
    keys = jax.random.split(KEY, 4)
    one = jax.jit(functools.partial(aug.augment, **SETTINGS))
    for i in range(4):
        np.testing.assert_allclose(out["x"][i], one(keys[i], x[i]), atol=1e-5)
    # Batches of batches trace under vmap (shapes only: one more compilation would add nothing).
    nested = jax.eval_shape(
        jax.vmap(lambda k, b: aug.augment_batch({"x": b}, k, **SETTINGS)["x"]),
        jax.random.split(KEY, 2),
        np.stack([x, x[::-1]]),
    )
    assert nested.shape == (2, 4, 10, 10, 2)
    with pytest.raises(ValueError, match=r"\[B, H, W, C\]"):
        aug.augment_batch({"x": x[0]}, KEY)


def test_engine_augmentation_depends_only_on_seed_and_step():
    batch = _batch()

    def probe(params, extra, batch, rng):  # returns what the loss saw
        return jnp.float32(0.0), ({"x": batch["x"]}, extra)

    fn = jax.jit(lambda batch, rng: aug.with_augmentation(probe, **SETTINGS)(None, {}, batch, rng))
    rng = jax.random.fold_in(jax.random.PRNGKey(7), 3)  # the engine's key for seed 7, step 3
    seen = fn(batch, rng)[1][0]["x"]
    again = fn(batch, jax.random.fold_in(jax.random.PRNGKey(7), 3))[1][0]["x"]
    np.testing.assert_array_equal(seen, again)
    want = _augment_batch(batch, jax.random.fold_in(rng, aug.AUGMENT_STREAM))
    np.testing.assert_array_equal(seen, want["x"])
    step4 = fn(batch, jax.random.fold_in(jax.random.PRNGKey(7), 4))[1][0]["x"]
    assert not np.allclose(step4, seen, atol=1e-2)

    traces = []

    def loss(params, extra, batch, rng):  # a real loss through the jitted engine step
        traces.append(1)
        return jnp.mean((params["w"] * batch["x"] - batch["y"]) ** 2), ({}, extra)

    state = TrainState.create(
        apply_fn=None, params={"w": jnp.ones(())}, tx=optax.sgd(0.1), rng=jax.random.PRNGKey(7)
    )
    step = jit_train_step(aug.with_augmentation(loss, **SETTINGS))
    for _ in range(3):
        state, metrics = step(state, batch)
    assert len(traces) == 1 and np.isfinite(float(metrics["loss"]))
