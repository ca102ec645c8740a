"""Losses of the Table-1 baselines against numpy and hand-computed values."""
import math

import numpy as np
import pytest
import torch

from pipeline.losses.correlation import dcca_loss, total_correlation, view_covariances
from pipeline.losses.discrimination import label_space_loss, modality_invariance_loss
from pipeline.models.baselines.scml import multilabel_loss


def numpy_total_correlation(h1, h2, reg, top_k=0):
    """The DCCA objective written out with numpy (eigendecomposition-based matrix square roots)."""
    m = h1.shape[0]
    a, b = h1 - h1.mean(0), h2 - h2.mean(0)
    s11 = a.T @ a / (m - 1) + reg * np.eye(h1.shape[1])
    s22 = b.T @ b / (m - 1) + reg * np.eye(h2.shape[1])
    s12 = a.T @ b / (m - 1)

    def inv_sqrt(s):
        w, v = np.linalg.eigh(s)
        return v @ np.diag(w ** -0.5) @ v.T

    t = inv_sqrt(s11) @ s12 @ inv_sqrt(s22)
    sv = np.sort(np.sqrt(np.clip(np.linalg.eigvalsh(t.T @ t), 0, None)))[::-1]
    return sv[:top_k].sum() if top_k else sv.sum()


@pytest.mark.parametrize("top_k", [0, 2])
def test_total_correlation_matches_numpy(top_k):
    rng = np.random.default_rng(0)
    h1 = rng.normal(size=(50, 4))
    h2 = np.hstack([h1[:, :2] + 0.3 * rng.normal(size=(50, 2)), rng.normal(size=(50, 3))])
    expected = numpy_total_correlation(h1, h2, 1e-3, top_k)
    got = total_correlation(torch.from_numpy(h1), torch.from_numpy(h2), 1e-3, top_k).item()
    assert got == pytest.approx(expected, rel=1e-8)
    assert dcca_loss(torch.from_numpy(h1), torch.from_numpy(h2), 1e-3, top_k).item() == pytest.approx(
        (top_k or 4) - expected, rel=1e-8)


def test_correlation_of_linearly_related_views_is_maximal_and_loss_near_zero():
    rng = np.random.default_rng(1)
    h1 = torch.from_numpy(rng.normal(size=(200, 3)))
    h2 = h1 @ torch.from_numpy(rng.normal(size=(3, 3))) + 5.0  # invertible map + offset: correlation 1 each
    assert total_correlation(h1, h2, 1e-9).item() == pytest.approx(3.0, abs=1e-5)
    assert dcca_loss(h1, h2, 1e-9).item() == pytest.approx(0.0, abs=1e-5)


def test_correlation_gradient_is_finite_and_increases_correlation():
    torch.manual_seed(0)
    h1 = torch.randn(64, 3, requires_grad=True)
    h2 = torch.randn(64, 3)
    loss = dcca_loss(h1, h2, 1e-4)
    loss.backward()
    assert torch.isfinite(h1.grad).all()
    with torch.no_grad():
        assert dcca_loss(h1 - 0.5 * h1.grad, h2, 1e-4) < loss


def test_view_covariances_need_two_items():
    with pytest.raises(ValueError, match="at least 2 items"):
        view_covariances(torch.zeros(1, 3), torch.zeros(1, 3), 0.0)


def test_dscmr_label_space_loss_by_hand():
    pred = torch.tensor([[0.5, 1.0, 0.0], [1.0, 1.0, 1.0]])
    labels = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 1.0]])
    # item 0: ||(-0.5, 0, 0)|| = 0.5; item 1: ||(0, 1, 0)|| = 1 -> mean 0.75
    assert label_space_loss(pred, labels).item() == pytest.approx(0.75)
    with pytest.raises(ValueError, match="differ in shape"):
        label_space_loss(pred, labels[:, :2])


def test_dscmr_modality_invariance_loss_by_hand():
    u = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    v = torch.tensor([[3.0, 4.0], [1.0, 1.0]])
    assert modality_invariance_loss(u, v).item() == pytest.approx(2.5)  # (5 + 0) / 2


def test_scml_multilabel_loss_by_hand():
    logits = torch.tensor([[0.0, 2.0]])
    labels = torch.tensor([[1.0, 0.0]])
    expected = (math.log(2) + math.log(1 + math.exp(2))) / 2
    assert multilabel_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)
