"""SCAN cross attention, its semantic-consistency objective and the triplet ranking loss."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.losses.consistency import semantic_consistency_loss
from pipeline.losses.ranking import distinct_images, triplet_ranking_loss
from pipeline.models.scan import _Softmax, chunked_cross_attention, cross_attention_scores, l2_normalise
from pipeline.params import validate
from pipeline.training.registry import build_method, rebuild_method
from pipeline.training.scoring import score_source
from instance_data import concept_data, rsum_on, train_steps


pytestmark = pytest.mark.usefixtures("one_thread")


def reference_pair(v: torch.Tensor, t: torch.Tensor, lambda1: float, lambda2: float) -> tuple[float, float]:
    """F^V, F^S of one image (regions `v` [R, d]) and one text (words `t` [n, d]) written out as in
    papers/002 Eq. 4-8, with explicit context vectors."""
    k, n = v.shape[0], t.shape[0]
    s = torch.zeros(k, n, dtype=torch.float64)
    for i in range(k):
        for j in range(n):
            s[i, j] = torch.dot(v[i], t[j]) / (v[i].norm() * t[j].norm())
    relu = s.clamp_min(0)
    fv = 0.0
    for i in range(k):
        col = relu / relu.pow(2).sum(dim=0, keepdim=True).sqrt().clamp_min(1e-8)   # s~_ij over regions
        alpha = torch.softmax(lambda1 * col[i], dim=0)
        context = (alpha.unsqueeze(1) * t).sum(dim=0)
        fv += float(torch.dot(v[i], context) / (v[i].norm() * context.norm()))
    fs = 0.0
    for j in range(n):
        row = relu / relu.pow(2).sum(dim=1, keepdim=True).sqrt().clamp_min(1e-8)   # s~'_ij over words
        beta = torch.softmax(lambda2 * row[:, j], dim=0)
        context = (beta.unsqueeze(1) * v).sum(dim=0)
        fs += float(torch.dot(t[j], context) / (t[j].norm() * context.norm()))
    return fv / k, fs / n


def _random_block(n_img=3, n_txt=5, regions=4, width=7, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    regions_ = l2_normalise(torch.randn(n_img, regions, d, generator=g, dtype=torch.float64))
    words = l2_normalise(torch.randn(n_txt, width, d, generator=g, dtype=torch.float64))
    lengths = torch.randint(1, width + 1, (n_txt,), generator=g)
    lengths[0] = width
    words = words * (torch.arange(width) < lengths.unsqueeze(1)).unsqueeze(-1)
    return regions_, words, lengths


def test_batched_attention_matches_per_pair_reference():
    regions, words, lengths = _random_block()
    fv, fs = cross_attention_scores(regions, words, lengths, lambda1=9.0, lambda2=4.0)
    for i in range(regions.shape[0]):
        for j in range(words.shape[0]):
            ref_v, ref_s = reference_pair(regions[i], words[j, :lengths[j]], 9.0, 4.0)
            assert fv[i, j].item() == pytest.approx(ref_v, abs=1e-5)
            assert fs[i, j].item() == pytest.approx(ref_s, abs=1e-5)
    # padding beyond a caption's end must not change its scores
    padded = torch.cat([words, l2_normalise(torch.randn(words.shape[0], 3, words.shape[2], dtype=words.dtype))], 1)
    fv2, fs2 = cross_attention_scores(regions, padded, lengths, lambda1=9.0, lambda2=4.0)
    torch.testing.assert_close(fv2.double(), fv.double(), atol=1e-6, rtol=0)
    torch.testing.assert_close(fs2.double(), fs.double(), atol=1e-6, rtol=0)


@pytest.mark.parametrize("dim", [2, 3])
def test_attention_softmax_matches_torch_with_its_gradient_and_masked_words(dim):
    torch.manual_seed(0)
    x = torch.randn(3, 4, 6, 5, dtype=torch.float64) * 4
    x[..., 3:] = float("-inf") if dim == 3 else 0.0   # padded words get no weight, as in Eq. 5
    mine, ref = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    y, y_ref = _Softmax.apply(mine, dim), torch.softmax(ref, dim)
    assert torch.allclose(y, y_ref, atol=1e-12)
    if dim == 3:
        assert (y[..., 3:] == 0).all()
    g = torch.randn_like(y)
    (y * g).sum().backward()
    (y_ref * g).sum().backward()
    assert torch.allclose(mine.grad, ref.grad, atol=1e-12)
    assert torch.autograd.gradcheck(lambda t: _Softmax.apply(t, dim), (torch.randn(2, 3, 4, 5, dtype=torch.float64,
                                                                                   requires_grad=True),))


def test_chunked_similarity_equals_unchunked():
    regions, words, lengths = _random_block(n_img=7, n_txt=11, seed=3)
    fv, fs = cross_attention_scores(regions, words, lengths, lambda1=9.0, lambda2=9.0)
    for grounded in ((True, False), (False, True), (True, True)):
        tiny = chunked_cross_attention(regions, words, lengths, lambda1=9.0, lambda2=9.0, image_grounded=grounded[0],
                                       text_grounded=grounded[1], memory_mb=1e-4)   # one pair-block at a time
        expected = (fv if grounded[0] else 0) + (fs if grounded[1] else 0)
        torch.testing.assert_close(tiny, expected.float(), atol=1e-5, rtol=0)


def test_hardest_negative_triplet_loss_by_hand():
    scores = torch.tensor([[0.9, 0.5, 0.2],
                           [0.3, 0.6, 0.65],
                           [0.1, 0.8, 0.4]])
    # image anchors: row max off-diagonal -> 0.5, 0.3, 0.8 ; text anchors: column max -> 0.3, 0.8, 0.65
    expected = (max(0, 0.2 - 0.9 + 0.5) + max(0, 0.2 - 0.6 + 0.65) + max(0, 0.2 - 0.4 + 0.8)
                + max(0, 0.2 - 0.9 + 0.3) + max(0, 0.2 - 0.6 + 0.8) + max(0, 0.2 - 0.4 + 0.65))
    assert triplet_ranking_loss(scores, 0.2).item() == pytest.approx(expected)
    assert triplet_ranking_loss(scores, 0.2, reduction="mean").item() == pytest.approx(expected / 3)
    # a second caption of image 1 in column 2 is not a negative of image 1 (nor image 1 of it)
    rows_img, rows_txt = torch.tensor([0, 1, 1]), torch.tensor([0, 1, 1])
    neg = distinct_images(rows_img, rows_txt)
    expected_dedup = (max(0, 0.2 - 0.9 + 0.5) + max(0, 0.2 - 0.6 + 0.3) + max(0, 0.2 - 0.4 + 0.1)
                      + max(0, 0.2 - 0.9 + 0.3) + max(0, 0.2 - 0.6 + 0.5) + max(0, 0.2 - 0.4 + 0.2))
    assert triplet_ranking_loss(scores, 0.2, neg).item() == pytest.approx(expected_dedup)
    # sampled negatives: always a valid one; "all" sums every negative (Eq. 13)
    for seed in range(5):
        g = torch.Generator().manual_seed(seed)
        sampled = triplet_ranking_loss(scores, 0.2, neg, mining="sampled", generator=g).item()
        assert 0 <= sampled <= expected_dedup + 1e-6
    all_neg = sum(max(0, 0.2 - scores[i, i].item() + scores[i, j].item()) +
                  max(0, 0.2 - scores[j, j].item() + scores[i, j].item())
                  for i in range(3) for j in range(3) if i != j)
    assert triplet_ranking_loss(scores, 0.2, mining="all").item() == pytest.approx(all_neg)
    with pytest.raises(ValueError, match="square"):
        triplet_ranking_loss(scores[:2], 0.2)


def _scan(name: str, data, d: int = 16, **overrides):
    """The paper's form (relu, mean, captions of one image are not negatives) unless `recipe` says otherwise."""
    params = validate({"methods": {name: {"d_model": d, "recipe": "paper", **overrides}}})
    torch.manual_seed(0)
    return build_method(name, params, data.info, word_vectors=data.word_vectors)


def test_consistency_objective_matches_hand_computation():
    data = concept_data(n_images=10, seed=1)
    method = _scan("scan_consistency", data, lambda_con=0.7, lambda2=5.0)
    method.eval()  # nothing stochastic in SCAN; eval keeps the GRU deterministic anyway
    batch = data.pair_batch(torch.tensor([0, 5, 11, 20, 26, 33])).to("cpu")   # 11 and 5 share image 1
    loss, parts = method.training_loss(batch)
    with torch.no_grad():
        regions = method.encode_images(batch.images).double()
        words, lengths = method.encode_texts(batch.texts)
    n = len(batch)
    fv = torch.zeros(n, n, dtype=torch.float64)
    fs = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        for j in range(n):
            fv[i, j], fs[i, j] = reference_pair(regions[i], words[j, :lengths[j]].double(), 9.0, 5.0)
    consistency = sum((fv[i, j] - fs[i, j]) ** 2 for i in range(n) for j in range(n))
    assert parts["consistency"].item() == pytest.approx(float(consistency), rel=1e-4, abs=1e-7)
    score = fv + fs
    rows = batch.images.rows
    ranking = 0.0
    for i in range(n):
        negs_t = [score[i, j] for j in range(n) if rows[j] != rows[i]]
        negs_i = [score[j, i] for j in range(n) if rows[j] != rows[i]]
        ranking += max(0.0, 0.2 - score[i, i] + max(negs_t)) + max(0.0, 0.2 - score[i, i] + max(negs_i))
    assert parts["ranking"].item() == pytest.approx(float(ranking), rel=1e-4, abs=1e-6)
    assert loss.item() == pytest.approx(float(ranking + 0.7 * consistency), rel=1e-4, abs=1e-6)


def test_consistency_is_the_sum_the_official_batchmean_computed_under_torch_1():
    # F^V = [[1, 2], [3, 4]], F^S = [[0, 2], [1, 1]]: squared differences 1, 0, 4, 9 -> sum 14 (the mean would
    # be 3.5, a mean per row ("batchmean") 7). The official MSELoss(reduction="batchmean") summed under torch
    # 1.0; torch 2.x refuses the reduction, so xmr cannot call it and computes the sum itself.
    fv = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    fs = torch.tensor([[0.0, 2.0], [1.0, 1.0]], dtype=torch.float64, requires_grad=True)
    loss = semantic_consistency_loss(fv, fs)
    assert loss.item() == 14.0 and loss.dtype == torch.float32
    with pytest.raises(ValueError, match="batchmean"):
        torch.nn.MSELoss(reduction="batchmean")(fv, fs)


def test_variants_score_with_their_grounding_and_round_trip():
    data = concept_data(n_images=8, seed=2)
    rows, captions = torch.arange(8), torch.arange(40)
    for name, pick in (("scan_i2t", 0), ("scan_t2i", 1)):
        method = _scan(name, data).eval()
        img, txt = method.encode_images(data.image_batch(rows).to("cpu")), method.encode_texts(data.text_batch(captions))
        both = cross_attention_scores(img, txt[0], txt[1], lambda1=9.0, lambda2=9.0)
        torch.testing.assert_close(method.similarity(img, txt), both[pick], atol=1e-5, rtol=0)
        # a method with its own similarity: the metrics get its score matrix, or above the size limit
        # a block callable
        torch.testing.assert_close(score_source(method, img, txt, 8, 40), both[pick], atol=1e-5, rtol=0)
        block = score_source(method, img, txt, 8, 40, dense_pairs=8 * 40 - 1)
        torch.testing.assert_close(block(torch.tensor([1, 3]), torch.tensor([0, 7, 9])),
                                   both[pick][[1, 3]][:, [0, 7, 9]], atol=1e-5, rtol=0)
        rebuilt = rebuild_method(method.config())
        rebuilt.load_state_dict(method.state_dict())
        rebuilt.eval()
        torch.testing.assert_close(rebuilt.similarity(rebuilt.encode_images(data.image_batch(rows).to("cpu")),
                                                      rebuilt.encode_texts(data.text_batch(captions))),
                                   method.similarity(img, txt))
        _, parts = method.training_loss(data.pair_batch(torch.arange(0, 40, 3)).to("cpu"))
        assert set(parts) == {"ranking"}


def test_bad_settings_name_the_parameter():
    data = concept_data(n_images=4)
    with pytest.raises(ValueError, match="methods.scan_consistency.lambda_con"):
        _scan("scan_consistency", data, lambda_con=-1.0)
    with pytest.raises(ValueError, match="methods.scan_t2i.lambda2"):
        _scan("scan_t2i", data, lambda2=0.0)


def test_gradients_are_finite_with_empty_and_short_captions():
    data = concept_data(n_images=6, seed=4)
    method = _scan("scan_consistency", data)
    batch = data.pair_batch(torch.arange(0, 30, 5)).to("cpu")
    texts = batch.texts
    lengths = texts.lengths.clone()
    lengths[0], lengths[1] = 0, 1
    batch = type(batch)(batch.images, type(texts)(texts.captions, texts.rows, texts.ids, lengths, texts.labels))
    loss, _ = method.training_loss(batch)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in method.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", ["scan_consistency", "scan_t2i", "scan_i2t"])
def test_tiny_run_learns(name):
    data = concept_data(n_images=120, seed=0)
    train_rows, test_rows = np.arange(80), np.arange(80, 120)
    method = _scan(name, data, d=32)
    before = rsum_on(method, data, test_rows)
    losses = train_steps(method, data, train_rows, steps=120, lr=2e-3)
    after = rsum_on(method, data, test_rows)
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    assert after > before + 100, (before, after)   # rsum of 6 recalls: random is about 50 here


def test_trains_and_scores_through_the_training_loop(tmp_path):
    """The method protocol end to end: loop, checkpoint, reload, split scoring with the block callable."""
    from retrieval_fixtures import make_dataset

    from pipeline.training.checkpoint import load_model
    from pipeline.training.data import RetrievalData
    from pipeline.training.loop import train_method
    from pipeline.training.scoring import score_split, split_metrics

    data = RetrievalData(*make_dataset(n_images=60, n_val=12, n_test=12), cache_splits=("train", "val"))
    params = validate({"train": {"batch_size": 16, "lr": 2e-3, "epochs": 2, "device": "cpu", "threads": 1,
                                 "eval_batch_size": 7, "select_metric": "rsum"},
                       "methods": {"scan_t2i": {"d_model": 16}}})
    result = train_method("scan_t2i", params, data, tmp_path / "m", tmp_path / "h.json", dataset="synthetic",
                          progress=False, log=lambda m: None)
    method, config = load_model(tmp_path / "m", "scan_t2i", data.info)
    assert config["select_metric"] == "rsum"
    scores = score_split(method, data, "val", metrics_params=params["metrics"], dataset="synthetic", batch_size=7,
                         device=torch.device("cpu"))
    metrics = split_metrics(scores, data, metrics_params=params["metrics"], dataset="synthetic", protocol="all")
    assert metrics["rsum"] == pytest.approx(result.best_value, abs=1e-6)
