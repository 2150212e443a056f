"""dl.data.distort against dl.data.augment (its conv-based reference) and scipy.ndimage."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from dl.data import augment
from dl.data.distort import distort, distort_batch, random_distort, smooth, with_distortion


def _image(seed=0, shape=(28, 28, 1)):
    return jnp.asarray(np.random.default_rng(seed).uniform(size=shape), jnp.float32)


@pytest.mark.parametrize("sigma", [1.0, 4.0, 6.0, 20.0])
def test_matmul_smoothing_equals_augment_gaussian_smooth(sigma):
    u = _image(1, (28, 20, 1))[..., 0] * 2.0 - 1.0
    np.testing.assert_allclose(smooth(u, sigma), augment.gaussian_smooth(u, sigma), atol=2e-6)


def test_elastic_part_equals_augment_resample_of_its_field():
    img = _image(2)
    noise = jax.random.uniform(jax.random.PRNGKey(0), (2, 28, 28), jnp.float32, -1.0, 1.0)
    want = augment.resample(img, augment._grid(28, 28) + augment._field(noise, 36.0, 6.0))
    got = distort(img, noise=noise, alpha=36.0, sigma=6.0)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_rotation_equals_augment_rotate():
    img = _image(3)
    np.testing.assert_allclose(distort(img, degrees=12.5), augment.rotate(img, 12.5), atol=1e-6)
    np.testing.assert_array_equal(distort(img), img)  # the defaults are the identity


def test_scaling_equals_scipy_affine_transform():
    img = np.asarray(_image(4))[..., 0]
    sy, sx = 1.2, 0.85
    c = np.array([13.5, 13.5])
    matrix = np.diag([1 / sy, 1 / sx])  # output p samples the input at c + M (p - c)
    want = ndimage.affine_transform(
        img, matrix, offset=c - matrix @ c, order=1, mode="grid-constant", cval=0.0
    )
    got = distort(jnp.asarray(img[..., None]), scale=(sy, sx))[..., 0]
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_random_distort_is_a_function_of_the_key_and_batches_by_vmap():
    img = _image(5)
    kw = {"max_degrees": 10.0, "max_scale": 0.15, "alpha": 36.0, "sigma": 6.0}
    k = jax.random.PRNGKey(7)
    a = random_distort(k, img, **kw)
    jitted = jax.jit(lambda k, x: random_distort(k, x, **kw))(k, img)
    np.testing.assert_allclose(a, jitted, atol=1e-5)  # matmul order differs under jit
    assert not np.allclose(a, random_distort(jax.random.PRNGKey(8), img, **kw))
    batch = jnp.stack([img, img])
    out = distort_batch(batch, k, **kw)
    keys = jax.random.split(k, 2)
    for i in range(2):
        np.testing.assert_allclose(out[i], random_distort(keys[i], img, **kw), atol=1e-5)
    with pytest.raises(ValueError, match="B, H, W, C"):
        distort_batch(img, k)


def test_with_distortion_sees_a_batch_fixed_by_the_step_rng():
    seen = []

    def loss(params, extra, batch, rng):
        seen.append(batch["x"])
        return jnp.sum(batch["x"]), ({}, extra)

    fn = with_distortion(loss, alpha=34.0, sigma=4.0)
    batch = {"x": jnp.stack([_image(6), _image(7)]), "y": jnp.zeros(2, jnp.int32)}
    rng = jax.random.fold_in(jax.random.PRNGKey(0), 3)
    fn(None, {}, batch, rng)
    fn(None, {}, batch, rng)
    fn(None, {}, batch, jax.random.fold_in(jax.random.PRNGKey(0), 4))
    np.testing.assert_array_equal(seen[0], seen[1])
    assert not np.allclose(seen[0], seen[2]) and not np.allclose(seen[0], batch["x"])
