"""Losses of pipeline.losses against values computed by hand."""
import math

import pytest
import torch

from pipeline.losses import imc_loss, label_loss, masked_prediction_loss, triplet_consistency_loss


def test_label_loss_matches_eq4_by_hand():
    scores = torch.tensor([[0.6, 0.8, 0.0], [1.0, 0.0, 0.0]], requires_grad=True)
    labels = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    # item 0: y.g = 0.6 + 0.0 = 0.6; item 1: 1.0 + 0.0 = 1.0
    expected = (math.log(1 + math.exp(-0.6)) + math.log(1 + math.exp(-1.0))) / 2
    loss = label_loss(scores, labels)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    # d/ds log(1+exp(-s)) = -1/(1+exp(s)), divided by the batch of 2, only where the label is 1
    g0 = -1 / (1 + math.exp(0.6)) / 2
    assert scores.grad[0].tolist() == pytest.approx([g0, 0.0, g0])


def test_label_loss_of_an_unlabelled_item_is_log2_without_gradient():
    scores = torch.rand(1, 4, requires_grad=True)
    loss = label_loss(scores, torch.zeros(1, 4))
    loss.backward()
    assert loss.item() == pytest.approx(math.log(2))
    assert torch.all(scores.grad == 0)


def test_label_loss_is_stable_for_large_agreement():
    assert label_loss(torch.tensor([[1000.0]]), torch.tensor([[1.0]])).item() == pytest.approx(0.0, abs=1e-12)
    assert label_loss(torch.tensor([[-1000.0]]), torch.tensor([[1.0]])).item() == pytest.approx(1000.0)


def test_label_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="differ in shape"):
        label_loss(torch.zeros(2, 3), torch.zeros(2, 4))


def test_masked_prediction_loss_is_mean_cross_entropy_by_hand():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 3.0]])
    targets = torch.tensor([0, 1])
    nll0 = -math.log(math.exp(2) / (math.exp(2) + 2))
    nll1 = -math.log(math.exp(1) / (1 + math.exp(1) + math.exp(3)))
    assert masked_prediction_loss(logits, targets).item() == pytest.approx((nll0 + nll1) / 2, rel=1e-6)


def test_masked_prediction_loss_without_masked_segments_is_zero_and_differentiable():
    logits = torch.zeros(0, 5, requires_grad=True)
    loss = masked_prediction_loss(logits, torch.zeros(0, dtype=torch.long))
    loss.backward()
    assert loss.item() == 0.0


def _cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def test_imc_loss_matches_eq1_by_hand():
    zv = [[1.0, 0.0], [0.6, 0.8]]
    zw = [[0.0, 2.0], [1.0, 1.0]]
    yv = [[1, 0], [0, 1]]
    yw = [[0, 1], [1, 1]]

    def term(za, zb, ya, yb):
        total = 0.0
        for i in range(2):
            for j in range(2):
                theta = 0.5 * _cos(za[i], zb[j])
                s = 1.0 if any(a and b for a, b in zip(ya[i], yb[j])) else 0.0
                total += -(s * theta - math.log(1 + math.exp(theta)))
        return total / 4

    expected = term(zv, zw, yv, yw) + term(zv, zv, yv, yv) + term(zw, zw, yw, yw)
    got = imc_loss(torch.tensor(zv), torch.tensor(zw), torch.tensor(yv, dtype=torch.float32),
                   torch.tensor(yw, dtype=torch.float32))
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_triplet_consistency_loss_by_hand():
    zv = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    zw = torch.tensor([[0.8, 0.6], [0.6, 0.8]])
    # cos = [[0.8, 0.6], [0.6, 0.8]]; positives 0.8; margin 0.3
    # image anchors: max(0, 0.3 - 0.8 + 0.6) = 0.1 for (0,1) and (1,0); text anchors the same
    negatives = torch.tensor([[False, True], [True, False]])
    loss = triplet_consistency_loss(zv, zw, negatives, margin=0.3)
    assert loss.item() == pytest.approx((0.1 * 2 + 0.1 * 2) / 2, rel=1e-5)
    # excluding the pairs (e.g. they share a label) removes every term
    assert triplet_consistency_loss(zv, zw, torch.zeros(2, 2, dtype=torch.bool), 0.3).item() == 0.0
    # with a small margin the positives already win: no loss
    assert triplet_consistency_loss(zv, zw, negatives, margin=0.1).item() == pytest.approx(0.0, abs=1e-7)
