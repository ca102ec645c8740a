"""Bootstrap intervals: the vectorised statistics against a per-resample reference, the point estimates
against `evaluate_similarity`, interval coverage on synthetic scores with a known difference, bad input."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.metrics import evaluate_similarity
from pipeline.metrics.bootstrap import (PairedBootstrap, percentile_interval, reference_statistic,
                                       resample_indices, unit_counts)
from pipeline.metrics.per_query import PerQueryError, read_per_query, write_per_query
from test_metrics_evaluate import make_data

KEYS = ["ndcg_i2t", "ndcg_t2i", "ndcg_ave", "map_ave", "mapk_t2i", "r1_i2t", "r5_t2i", "r10_t2i", "medr_i2t",
        "medr_t2i", "meanr_t2i", "rsum", "f1_image", "f1_text"]
EXACT = {"r1_i2t", "r5_t2i", "r10_t2i", "medr_i2t", "medr_t2i", "meanr_t2i", "rsum", "f1_image", "f1_text"}


def synthetic(rng, n_images=12, shift=0.0) -> dict:
    """Per-query arrays of one method: images with 1 to 4 captions each (uneven clusters)."""
    captions = rng.integers(1, 5, size=n_images)
    unit_t2i = np.repeat(np.arange(n_images), captions)
    n_txt = len(unit_t2i)
    out = {"unit_i2t": np.arange(n_images), "unit_t2i": unit_t2i, "n_units": n_images,
           "f1_image": rng.integers(0, 4, size=(n_images, 3)), "f1_text": rng.integers(0, 4, size=(n_txt, 3))}
    for d, n in (("i2t", n_images), ("t2i", n_txt)):
        out[f"ndcg_{d}"] = np.clip(rng.random(n) + shift, 0, 1)
        out[f"ap_{d}"] = rng.random(n)
        out[f"apk_{d}"] = rng.random(n)
        out[f"rank_{d}"] = rng.integers(0, 15, size=n)
    return out


def reference(arrays: dict, drawn: np.ndarray, key: str) -> float:
    """One resample the slow way: expand the drawn images into their queries, then the metric's own code."""
    rows = {d: np.concatenate([np.flatnonzero(arrays[f"unit_{d}"] == u) for u in drawn]) for d in ("i2t", "t2i")}
    return reference_statistic(arrays, rows, key)


def test_vectorised_statistics_equal_a_per_resample_reference():
    rng = np.random.default_rng(0)
    arrays = synthetic(rng)
    indices = resample_indices(12, 40, seed=1)
    boot = PairedBootstrap({"": (arrays["unit_i2t"], arrays["unit_t2i"], 12)}, indices={"": indices})
    for key in KEYS:
        fast = boot.distribution(arrays, key)
        slow = np.array([reference(arrays, drawn, key) for drawn in indices])
        if key in EXACT:  # integer counts: the same arithmetic, bit for bit
            assert np.array_equal(fast, slow), key
        else:  # float means: only the summation order differs
            np.testing.assert_allclose(fast, slow, rtol=1e-12, err_msg=key)
        # the point estimate is the metric on the original queries (every image once)
        assert boot.point(arrays, key) == pytest.approx(reference(arrays, np.arange(12), key), rel=1e-12)


def test_paired_difference_uses_the_same_resamples_for_both_methods():
    rng = np.random.default_rng(2)
    a = synthetic(rng)
    b = dict(a, ndcg_i2t=np.clip(a["ndcg_i2t"] - 0.05, 0, 1), ndcg_t2i=np.clip(a["ndcg_t2i"] - 0.05, 0, 1))
    boot = PairedBootstrap.for_arrays(a, resamples=300, seed=0)
    diff = boot.difference(a, b, "ndcg_ave")
    per_resample = boot.distribution(a, "ndcg_ave") - boot.distribution(b, "ndcg_ave")
    assert (diff.low, diff.high) == percentile_interval(per_resample)
    assert diff.value == pytest.approx(boot.point(a, "ndcg_ave") - boot.point(b, "ndcg_ave"))
    # b is a shifted copy of a: the paired interval is far narrower than the methods' own intervals
    own = boot.estimate(a, "ndcg_ave")
    assert diff.excludes(0.0) and diff.high - diff.low < 0.5 * (own.high - own.low)
    assert own.low <= own.value <= own.high


def test_counts_and_draws_are_seeded():
    indices = resample_indices(7, 5, seed=3)
    assert np.array_equal(indices, resample_indices(7, 5, seed=3))
    counts = unit_counts(indices, 7)
    assert counts.shape == (5, 7) and np.array_equal(counts.sum(1), [7] * 5)
    assert all(counts[r, u] == np.sum(indices[r] == u) for r in range(5) for u in range(7))


def test_point_estimates_reproduce_evaluate_similarity(tmp_path):
    img, txt, labels, caption_image = make_data(seed=11)
    rng = np.random.default_rng(11)
    per: dict = {}
    metrics = evaluate_similarity((img, txt), labels, None, caption_image, image_logits=rng.normal(size=(30, 6)),
                                  text_logits=rng.normal(size=(150, 6)), recall_ks=(1, 5, 10), per_query=per)
    write_per_query(tmp_path / "m.npz", per)
    arrays = read_per_query(tmp_path / "m.npz")
    boot = PairedBootstrap.for_arrays(arrays, resamples=50)
    for key in KEYS:
        assert boot.point(arrays, key) == pytest.approx(metrics[key], rel=1e-9, abs=1e-9), key
    assert np.array_equal(arrays["unit_t2i"], caption_image)


def test_intervals_cover_a_known_difference():
    """200 synthetic test sets from a population where method B beats A by exactly 3 NDCG points.

    Captions of an image share the image's difficulty (clustered, as real queries). If the intervals have
    95% coverage, the count of covering intervals is Binomial(200, 0.95): mean 190, sd 3.1. The percentile
    bootstrap under-covers by about 1 point at 40 images; 180..198 (coverage 0.90..0.99) is then about 3 sd
    on either side, which a correct implementation leaves with probability under 1%, while intervals that
    ignored the pairing (much wider: about 100% coverage) or the clustering (narrower) fall outside.
    """
    rng = np.random.default_rng(123)
    covered, widths = 0, []
    for _ in range(200):
        n, captions = 40, 3
        hard = rng.normal(0, 0.15, n)  # the image's difficulty, shared by both methods and its captions
        unit_t2i = np.repeat(np.arange(n), captions)
        arrays = {"unit_i2t": np.arange(n), "unit_t2i": unit_t2i, "n_units": n}
        a = {"ndcg_i2t": 0.6 + hard + rng.normal(0, 0.05, n),
             "ndcg_t2i": 0.6 + hard[unit_t2i] + rng.normal(0, 0.05, n * captions)}
        gain = rng.normal(0, 0.05, n)  # B's gain varies by image, around its true mean 0.03
        b = {"ndcg_i2t": a["ndcg_i2t"] + 0.03 + gain, "ndcg_t2i": a["ndcg_t2i"] + 0.03 + gain[unit_t2i]}
        boot = PairedBootstrap.for_arrays(arrays, resamples=400, seed=int(rng.integers(1 << 31)))
        diff = boot.difference({**arrays, **b}, {**arrays, **a}, "ndcg_ave")
        covered += diff.low <= 3.0 <= diff.high
        widths.append(diff.high - diff.low)
    assert 180 <= covered <= 198, covered
    assert 0.5 < np.mean(widths) < 5.0


def test_bad_input(tmp_path):
    rng = np.random.default_rng(4)
    arrays = synthetic(rng)
    boot = PairedBootstrap.for_arrays(arrays, resamples=10)
    other = synthetic(np.random.default_rng(5))
    with pytest.raises(PerQueryError, match="other.npz: its test queries .* differ"):
        boot.check(other, "other.npz")
    with pytest.raises(ValueError, match="no interval for metric 'n_images'"):
        boot.distribution(arrays, "n_images")
    with pytest.raises(PerQueryError, match="'ap_i2t' missing"):
        boot.distribution({k: v for k, v in arrays.items() if k != "ap_i2t"}, "map_i2t")
    bad = dict(arrays, ndcg_i2t=arrays["ndcg_i2t"][:3])
    with pytest.raises(PerQueryError, match="m.npz: 'ndcg_i2t' has shape"):
        write_per_query(tmp_path / "m.npz", bad)
    assert not (tmp_path / "m.npz").exists()
    with pytest.raises(PerQueryError, match="per-query file not found"):
        read_per_query(tmp_path / "absent.npz")
    with pytest.raises(ValueError, match="at least one unit"):
        resample_indices(0, 10, 0)


def test_point_estimates_with_collapsed_texts_and_folds(monkeypatch):
    """Tag datasets (identical texts collapsed) and COCO 1K folds keep one unit per test image."""
    import pipeline.metrics.protocols as protocols_module

    img, txt, labels, caption_image = make_data(seed=12)
    keys = [f"tag{int(c) % 7}" for c in caption_image]  # 7 distinct texts, each shared by several images
    per: dict = {}
    metrics = evaluate_similarity((img, txt), labels, None, caption_image, text_keys=keys, per_query=per)
    assert len(per["unit_t2i"]) == 7 and per["n_units"] == 30
    first = [keys.index(k) for k in dict.fromkeys(keys)]
    assert np.array_equal(per["unit_t2i"], caption_image[first])  # a collapsed text: its first image
    boot = PairedBootstrap.for_arrays(per, resamples=10)
    for key in ("ndcg_t2i", "map_ave", "r5_t2i"):
        assert boot.point(per, key) == pytest.approx(metrics[key], rel=1e-9), key

    monkeypatch.setattr(protocols_module, "COCO_TEST_IMAGES", 30)
    monkeypatch.setattr(protocols_module, "COCO_FOLD_IMAGES", 6)
    per = {}
    metrics = evaluate_similarity((img, txt), labels, None, caption_image, protocol=["coco5k", "coco1k"],
                                  per_query=per)
    # fold f holds images 6f..6f+5; its units are numbered past the earlier folds', so a unit is the image
    assert per["coco1k_n_units"] == 30 and np.array_equal(per["coco1k_unit_i2t"], np.arange(30))
    by_fold = np.concatenate([np.flatnonzero(caption_image // 6 == f) for f in range(5)])
    assert np.array_equal(per["coco1k_unit_t2i"], caption_image[by_fold])
    boot = PairedBootstrap.for_arrays(per, resamples=10)
    # equal folds: the pooled mean is the mean of the fold means
    for key in ("ndcg_ave", "coco1k_ndcg_ave", "coco1k_r1_t2i"):
        assert boot.point(per, key) == pytest.approx(metrics[key], rel=1e-9), key
    assert boot.estimate(per, "coco1k_rsum").low <= boot.estimate(per, "coco1k_rsum").high
    # The metrics file names the first protocol in its keys (coco5k_ndcg_ave); the per-query file keeps it plain.
    from pipeline.training.scoring import metrics_file
    written = metrics_file(metrics)
    assert "coco5k_ndcg_ave" in written
    for key in ("coco5k_ndcg_ave", "coco5k_rsum", "coco1k_ndcg_ave"):
        assert boot.point(per, key) == pytest.approx(written[key], rel=1e-9), key
