"""dl.eval.segmentation against scikit-learn's confusion_matrix and jaccard_score."""

import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import accuracy_score, jaccard_score
from sklearn.metrics import confusion_matrix as sk_confusion

from dl.eval.segmentation import confusion_matrix, iou_per_class, mean_iou, pixel_accuracy


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_sklearn(seed):
    rng = np.random.default_rng(seed)
    k = 11
    truth = rng.integers(0, k - 2, (4, 16, 21))  # classes 9 and 10 never true
    pred = np.where(rng.uniform(size=truth.shape) < 0.6, truth, rng.integers(0, k - 1, truth.shape))
    conf = np.asarray(
        confusion_matrix(predictions=jnp.asarray(pred), labels=jnp.asarray(truth), num_classes=k)
    )
    np.testing.assert_array_equal(conf, sk_confusion(truth.ravel(), pred.ravel(), labels=range(k)))
    # Class 10 is absent from both: excluded, as sklearn's default labels (truth | predictions).
    assert np.isnan(iou_per_class(conf)[10])
    np.testing.assert_allclose(
        mean_iou(conf), jaccard_score(truth.ravel(), pred.ravel(), average="macro"), rtol=1e-12
    )
    np.testing.assert_allclose(
        iou_per_class(conf)[:10],
        jaccard_score(truth.ravel(), pred.ravel(), average=None, labels=range(10)),
        rtol=1e-12,
    )
    np.testing.assert_allclose(pixel_accuracy(conf), accuracy_score(truth.ravel(), pred.ravel()))


def test_mask_drops_pixels_and_perfect_prediction():
    truth = jnp.asarray(np.arange(12).reshape(2, 6) % 3)
    mask = jnp.asarray([1.0, 0.0])[:, None]
    conf = np.asarray(confusion_matrix(predictions=truth, labels=truth, num_classes=3, mask=mask))
    np.testing.assert_array_equal(conf, np.diag([2, 2, 2]))
    assert mean_iou(conf) == 1.0 and pixel_accuracy(conf) == 1.0
