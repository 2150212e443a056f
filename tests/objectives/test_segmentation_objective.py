"""dl.objectives.segmentation: the per-pixel loss against a numpy reference; class weights."""

import jax.numpy as jnp
import numpy as np

from dl.objectives.segmentation import median_frequency_weights, pixel_cross_entropy


def test_pixel_cross_entropy_matches_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 4, 5, 6)).astype(np.float32)
    labels = rng.integers(0, 6, (3, 4, 5))
    w = rng.uniform(0.5, 2.0, 6).astype(np.float32)
    mask = np.array([1.0, 1.0, 0.0], np.float32)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    nll = -np.take_along_axis(logp, labels[..., None], -1)[..., 0] * w[labels]
    expect = nll[:2].mean()
    got = pixel_cross_entropy(
        logits=jnp.asarray(logits),
        labels=jnp.asarray(labels),
        mask=jnp.asarray(mask),
        class_weights=jnp.asarray(w),
    )
    np.testing.assert_allclose(float(got), expect, rtol=1e-5)


def test_median_frequency_weights():
    # Class 0 fills 3/4 of both images, class 1 1/4 of both, class 2 is absent.
    labels = np.zeros((2, 2, 2), np.int64)
    labels[:, 0, 0] = 1
    w = median_frequency_weights(labels, 3)
    freq = np.array([0.75, 0.25])
    np.testing.assert_allclose(w, [np.median(freq) / 0.75, np.median(freq) / 0.25, 1.0], rtol=1e-6)
