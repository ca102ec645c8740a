"""`evaluate_similarity`: every key against the per-query reference, input forms, chunking,
protocols, identical-text de-duplication and bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import metrics_reference as ref
from pipeline.metrics import MetricInputError, evaluate_similarity, metric_options, protocol_view, score_direction
from pipeline.metrics import protocols as protocols_module
from pipeline.metrics.scoring import make_source
from pipeline.params import validate

KS = (1, 5, 10, 20, 50, 100)


def make_data(n_img=30, per_image=5, dim=8, n_labels=6, seed=0, shuffle=True):
    """Random embeddings, multi-hot labels, captions in a shuffled (non-contiguous) order."""
    rng = np.random.default_rng(seed)
    img = rng.normal(size=(n_img, dim)).astype(np.float32)
    caption_image = np.repeat(np.arange(n_img), per_image)
    if shuffle:
        caption_image = rng.permutation(caption_image)
    txt = (img[caption_image] + rng.normal(scale=1.0, size=(len(caption_image), dim))).astype(np.float32)
    labels = (rng.random((n_img, n_labels)) < 0.3).astype(np.uint8)
    labels[0] = 0  # an unlabelled image: its queries have no relevant item
    return img, txt, labels, caption_image


def assert_same(got: dict, expected: dict, atol=1e-9):
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=atol), key


@pytest.mark.parametrize("ndcg_k,map_k", [(500, 500), (7, 3)])
def test_all_keys_against_reference(ndcg_k, map_k):
    img, txt, labels, caption_image = make_data()
    sim = ref.cosine(img, txt)
    got = evaluate_similarity(sim, labels, None, caption_image, ndcg_k=ndcg_k, map_k=map_k)
    expected = ref.evaluate(sim, labels, labels[caption_image], caption_image, ndcg_k, map_k, KS)
    assert_same(got, expected)
    assert got["protocol"] == "all" and got["n_images"] == 30 and got["n_texts"] == 150
    assert got["ndcg_k"] == ndcg_k and got["map_k"] == map_k


def test_tied_scores_against_reference():
    _, _, labels, caption_image = make_data(seed=1)
    rng = np.random.default_rng(1)
    sim = rng.integers(0, 3, (30, 150)).astype(np.float32)  # heavy ties everywhere
    got = evaluate_similarity(sim, labels, None, caption_image, ndcg_k=20, map_k=10)
    assert_same(got, ref.evaluate(sim, labels, labels[caption_image], caption_image, 20, 10, KS))


def test_all_equal_scores():
    labels = np.array([[1, 0], [0, 1], [1, 1]], dtype=np.uint8)
    caption_image = np.array([2, 1, 0])  # captions listed in reverse image order
    got = evaluate_similarity(np.zeros((3, 3), np.float32), labels, None, caption_image, recall_ks=(1, 2))
    # equal scores rank by index: image i's caption is text 2 - i, at rank 2 - i
    assert got["r1_i2t"] == pytest.approx(100 / 3) and got["r2_i2t"] == pytest.approx(200 / 3)
    assert got["medr_i2t"] == 2.0 and got["meanr_i2t"] == 2.0
    assert_same(got, ref.evaluate(np.zeros((3, 3)), labels, labels[caption_image], caption_image, 500, 500, (1, 2)))


def test_input_forms_agree():
    img, txt, labels, caption_image = make_data(seed=2)
    sim = ref.cosine(img, txt)
    from_matrix = evaluate_similarity(torch.from_numpy(sim), labels, None, caption_image)
    from_embeddings = evaluate_similarity((img, txt), labels, None, caption_image)
    calls = []

    def block(image_rows, text_rows):
        calls.append((len(image_rows), len(text_rows)))
        return sim[image_rows.numpy()][:, text_rows.numpy()]

    from_callable = evaluate_similarity(block, labels, None, caption_image, n_images=30, n_texts=150, chunk_size=8)
    for key, value in from_matrix.items():
        if isinstance(value, float):
            assert from_embeddings[key] == pytest.approx(value, abs=1e-4), key
            assert from_callable[key] == value, key
    assert (8, 150) in calls and (30, 8) in calls  # chunks of queries against the full gallery


@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_chunking_is_exact(chunk):
    img, txt, labels, caption_image = make_data(seed=3)
    whole = evaluate_similarity((img, txt), labels, None, caption_image, chunk_size=10_000)
    chunked = evaluate_similarity((img, txt), labels, None, caption_image, chunk_size=chunk)
    assert chunked == whole
    tiny_memory = evaluate_similarity((img, txt), labels, None, caption_image, memory_mb=0.001)
    assert tiny_memory == whole


def test_per_query_values_and_unlabelled_queries():
    img, txt, labels, caption_image = make_data(seed=4)
    pairs = make_source((img, txt)).pairs(np.arange(30), np.arange(150), torch.device("cpu"))
    lab = torch.as_tensor(labels, dtype=torch.float32)
    per = score_direction(pairs, "i2t", query_labels=lab, gallery_labels=lab[caption_image], truth=None,
                          ndcg_k=500, map_k=500, map_full=True)
    sim = ref.cosine(img, txt)
    rel = labels.astype(int) @ labels[caption_image].astype(int).T
    np.testing.assert_allclose(per["ndcg"], [ref.ndcg(sim[q], rel[q], 500) for q in range(30)], atol=1e-12)
    # image 0 carries no label: documented value 0 for NDCG and AP
    assert per["ndcg"][0] == 0.0 and per["ap"][0] == 0.0


def test_text_dedup_against_reference():
    # tag texts: several images share a text; identical texts collapse to their first occurrence
    rng = np.random.default_rng(5)
    n_img = 24
    vocabulary = np.array(["sky", "sea", "dog", "cat sky", "dog sea", "tree"])
    text_keys = vocabulary[rng.integers(0, len(vocabulary), n_img)]
    caption_image = np.arange(n_img)  # one tag text per image
    labels = (rng.random((n_img, 5)) < 0.4).astype(np.uint8)
    img = rng.normal(size=(n_img, 4)).astype(np.float32)
    txt = rng.normal(size=(n_img, 4)).astype(np.float32)
    got = evaluate_similarity((img, txt), labels, None, caption_image, text_keys=text_keys, recall_ks=(1, 2, 5))

    first = [int(np.flatnonzero(text_keys == t)[0]) for t in dict.fromkeys(text_keys)]
    sim = ref.cosine(img, txt)[:, first]
    rel = labels.astype(int) @ labels[first].astype(int).T
    expected = {
        "ndcg_i2t": 100 * np.mean([ref.ndcg(sim[q], rel[q], 500) for q in range(n_img)]),
        "ndcg_t2i": 100 * np.mean([ref.ndcg(sim[:, u], rel[:, u], 500) for u in range(len(first))]),
    }
    unique_of = {t: u for u, t in enumerate(dict.fromkeys(text_keys))}
    i2t = [ref.best_rank(sim[i], [unique_of[text_keys[i]]]) for i in range(n_img)]
    t2i = [ref.best_rank(sim[:, u], np.flatnonzero(text_keys == text_keys[first[u]])) for u in range(len(first))]
    expected.update(ref.recall_block(i2t, (1, 2, 5), "i2t"))
    expected.update(ref.recall_block(t2i, (1, 2, 5), "t2i"))
    assert_same(got, expected)
    assert got["n_texts"] == len(first) < n_img
    # token-id keys (lists of different lengths) dedup the same way
    # (ids from a fixed word table: Python's str hash changes with each process, and hash % 97 could collide)
    word_id = {w: i for i, w in enumerate(sorted({w for t in text_keys for w in t.split()}))}
    ids = [np.array([word_id[w] for w in t.split()]) for t in text_keys]
    assert evaluate_similarity((img, txt), labels, None, caption_image, text_keys=ids, recall_ks=(1, 2, 5)) == got


def test_coco_protocols(monkeypatch):
    # shrink the COCO sizes so the test stays tiny: 5 folds of 6 images out of 30
    monkeypatch.setattr(protocols_module, "COCO_TEST_IMAGES", 30)
    monkeypatch.setattr(protocols_module, "COCO_FOLD_IMAGES", 6)
    img, txt, labels, caption_image = make_data(seed=6)
    got = evaluate_similarity((img, txt), labels, None, caption_image, protocol=["coco5k", "coco1k"],
                              ndcg_k=10, map_k=5)
    sim = ref.cosine(img, txt)
    full = ref.evaluate(sim, labels, labels[caption_image], caption_image, 10, 5, KS)
    assert_same(protocol_view(got, "coco5k"), full, atol=1e-4)
    folds = []
    for f in range(5):
        imgs = np.arange(6 * f, 6 * f + 6)
        texts = np.flatnonzero(np.isin(caption_image, imgs))
        folds.append(ref.evaluate(sim[np.ix_(imgs, texts)], labels[imgs], labels[caption_image[texts]],
                                  caption_image[texts] - 6 * f, 10, 5, KS))
    averaged = {k: np.mean([f[k] for f in folds]) for k in folds[0]}
    assert_same(protocol_view(got, "coco1k"), averaged, atol=1e-4)
    assert got["coco1k_n_images"] == 6 and got["protocol"] == "coco5k"
    assert protocol_view(got, "all") is None


def test_coco_protocol_needs_5000_images():
    img, txt, labels, caption_image = make_data()
    with pytest.raises(MetricInputError, match="5000-image COCO test set, got 30"):
        evaluate_similarity((img, txt), labels, None, caption_image, protocol="coco1k")


def test_official_coco_t2i_discount():
    img, txt, labels, caption_image = make_data(seed=8, shuffle=False)
    got = evaluate_similarity((img, txt), labels, None, caption_image, t2i_discount="official_coco")
    standard = evaluate_similarity((img, txt), labels, None, caption_image)
    sim = ref.cosine(img, txt)
    rel = labels[caption_image].astype(int) @ labels.astype(int).T
    expected = 100 * np.mean([ref.ndcg(sim[:, t], rel[t], 500, lambda i, j=t % 5: 1 / np.log2(5 * i + j + 2))
                              for t in range(150)])
    assert got["ndcg_t2i"] == pytest.approx(expected, abs=1e-9)
    assert got["ndcg_i2t"] == standard["ndcg_i2t"] and got["ndcg_t2i"] != standard["ndcg_t2i"]


def test_ndcg_k_larger_than_gallery_is_clamped():
    img, txt, labels, caption_image = make_data(seed=9)
    big = evaluate_similarity((img, txt), labels, None, caption_image, ndcg_k=10**6, map_k=10**6)
    exact = evaluate_similarity((img, txt), labels, None, caption_image, ndcg_k=150, map_k=150)
    assert big["ndcg_i2t"] == exact["ndcg_i2t"]
    # the t2i gallery has 30 images: k is clamped per direction
    assert big["ndcg_t2i"] == evaluate_similarity((img, txt), labels, None, caption_image, ndcg_k=30)["ndcg_t2i"]


def test_classification_f1_keys():
    img, txt, labels, caption_image = make_data(seed=10)
    rng = np.random.default_rng(10)
    image_logits, text_logits = rng.normal(size=(30, 6)), rng.normal(size=(150, 6))
    got = evaluate_similarity((img, txt), labels, None, caption_image, image_logits=image_logits,
                              text_logits=text_logits)
    from pipeline.metrics import micro_f1
    assert got["f1_image"] == micro_f1(image_logits, labels)
    assert got["f1_text"] == micro_f1(text_logits, labels[caption_image])


def test_torch_inputs():
    img, txt, labels, caption_image = make_data(seed=13)
    from_numpy = evaluate_similarity((img, txt), labels, None, caption_image)
    from_torch = evaluate_similarity((torch.from_numpy(img), torch.from_numpy(txt)), torch.from_numpy(labels), None,
                                     torch.from_numpy(caption_image))
    assert from_torch == from_numpy


def test_labels_only_or_captions_only():
    img, txt, labels, caption_image = make_data(seed=11)
    only_recall = evaluate_similarity((img, txt), caption_image=caption_image)
    assert "rsum" in only_recall and "ndcg_i2t" not in only_recall
    only_labels = evaluate_similarity((img, txt), labels, labels[caption_image])
    assert "ndcg_ave" in only_labels and "r1_i2t" not in only_labels
    no_full_map = evaluate_similarity((img, txt), labels, None, caption_image, map_full=False, map_k=0)
    assert "map_i2t" not in no_full_map and "mapk_i2t" not in no_full_map
    assert no_full_map["ndcg_ave"] == only_labels["ndcg_ave"]


def bad_cases():
    img, txt, labels, caption_image = make_data(n_img=6, seed=12)
    nan_img = img.copy()
    nan_img[2, 1] = np.nan
    inf_sim = ref.cosine(img, txt)
    inf_sim[1, 3] = np.inf
    zero_img = img.copy()
    zero_img[4] = 0
    two_hot = labels.copy()
    two_hot[1, 1] = 2
    no_caption = caption_image.copy()
    no_caption[no_caption == 3] = 2
    return [
        (dict(scores=(nan_img, txt), image_labels=labels, caption_image=caption_image), "image embeddings contain NaN"),
        (dict(scores=inf_sim, image_labels=labels, caption_image=caption_image), "similarity matrix\\) contain NaN or inf"),
        (dict(scores=(zero_img, txt), caption_image=caption_image), "row 4 has zero norm"),
        (dict(scores=(img, txt[:, :3]), caption_image=caption_image), "dimension"),
        (dict(scores=(img, txt), image_labels=labels[:5], caption_image=caption_image), "image_labels has 5 rows"),
        (dict(scores=(img, txt), image_labels=labels, text_labels=labels, caption_image=caption_image),
         "text_labels has 6 rows"),
        (dict(scores=(img, txt), image_labels=two_hot, caption_image=caption_image), "multi-hot"),
        (dict(scores=(img, txt), caption_image=caption_image[:-1]), "caption_image has 29 entries"),
        (dict(scores=(img, txt), caption_image=caption_image + 1), "image indices in \\[0, 6\\)"),
        (dict(scores=(img, txt), caption_image=no_caption), "image row 3 has no caption"),
        (dict(scores=(img, txt), image_labels=labels), "text_labels: give them, or caption_image"),
        (dict(scores=(img, txt), caption_image=caption_image, protocol="coco2k"), "unknown protocol 'coco2k'"),
        (dict(scores=(img, txt), caption_image=caption_image, ndcg_k=0), "ndcg_k must be at least 1"),
        (dict(scores=(img, txt), caption_image=caption_image, recall_ks=(0, 5)), "recall_ks"),
        (dict(scores=(img, txt), caption_image=caption_image, t2i_discount="odd"), "t2i_discount"),
        (dict(scores=(img, txt), caption_image=caption_image, text_keys=["a"] * 5), "text_keys has 5 entries"),
        (dict(scores=(img, txt), caption_image=caption_image, image_logits=np.zeros((6, 6))), "need image_labels"),
        (dict(scores=(img, txt), image_labels=labels, caption_image=caption_image, text_logits=np.zeros((6, 6))),
         "text_logits must be \\[30, labels\\]"),
        (dict(scores=np.zeros(5)), "must be 2-D"),
        (dict(scores=np.zeros((3, 0))), "nothing to rank: 3 images and 0 texts"),
        (dict(scores=lambda i, t: np.zeros((len(i), len(t)))), "needs n_images and n_texts"),
        (dict(scores=lambda i, t: np.zeros((2, 2)), n_images=6, n_texts=30, caption_image=caption_image),
         "returned shape \\(2, 2\\)"),
        (dict(scores=lambda i, t: np.full((len(i), len(t)), np.nan), n_images=6, n_texts=30,
              caption_image=caption_image), "score callable contain NaN"),
    ]


@pytest.mark.parametrize("kwargs,message", bad_cases())
def test_bad_input(kwargs, message):
    with pytest.raises(MetricInputError, match=message):
        evaluate_similarity(**kwargs)


def test_metric_options_from_params():
    params = validate({"metrics": {"ndcg_k": 100, "datasets": {"mirflickr": {"dedup_texts": True}}}})
    opts = metric_options(params["metrics"], "mirflickr")
    assert opts["ndcg_k"] == 100 and opts["dedup_texts"] is True and opts["protocol"] == ["all"]
    assert opts["chunk_size"] is None
    defaults = validate({})["metrics"]
    assert metric_options(defaults, "coco")["protocol"] == ["coco5k", "coco1k"]
    assert metric_options(defaults, "shapes")["protocol"] == ["all"]
    assert metric_options(defaults, "coco_mini")["protocol"] == ["all"]
    assert metric_options(defaults, "nuswide")["dedup_texts"] is True
    assert metric_options(defaults, "coco")["dedup_texts"] is False
    from pipeline.params import ParamError  # bad entries stop when params are loaded

    with pytest.raises(ParamError, match="metrics.datasets.x.protocols"):
        validate({"metrics": {"datasets": {"x": {"protocols": ["nope"]}}}})
    with pytest.raises(ParamError, match="metrics.datasets.y.dedupe' is unknown"):
        validate({"metrics": {"datasets": {"y": {"dedupe": True}}}})


def test_label_bits_popcount_and_many_labels():
    from pipeline.metrics.label_bits import pack_labels, popcount32, shared_counts
    values = torch.tensor([0, 1, 3, 255, 2**31 + 5, 2**32 - 1])
    assert popcount32(values).tolist() == [0, 1, 2, 8, 3, 32]
    rng = np.random.default_rng(14)
    a, b = rng.random((5, 80)) < 0.3, rng.random((7, 80)) < 0.3  # 80 labels (COCO): 3 words of 32 bits
    bits_a, bits_b = pack_labels(torch.from_numpy(a)), pack_labels(torch.from_numpy(b))
    assert bits_a.shape == (5, 3)
    got = shared_counts(bits_a, bits_b.unsqueeze(0).expand(5, -1, -1))
    np.testing.assert_array_equal(got.numpy(), a.astype(int) @ b.astype(int).T)
    # the whole entry point with 80 labels against the reference
    img, txt, _, caption_image = make_data(seed=14)
    labels = (rng.random((30, 80)) < 0.1).astype(np.uint8)
    sim = ref.cosine(img, txt)
    got = evaluate_similarity(sim, labels, None, caption_image, ndcg_k=20, map_k=10)
    assert_same(got, ref.evaluate(sim, labels, labels[caption_image], caption_image, 20, 10, KS))
