"""Official-code options and recipes (issue 15): small hand-computed cases written from the facts in
../shared/notes/reference.md ("Official training recipes and behaviours"), and the params checks."""
from __future__ import annotations

import math

import pytest
import torch

from pipeline.losses.consistency import imc_loss, label_similarity
from pipeline.losses.context import masked_prediction_loss
from pipeline.losses.ranking import pooled_hardest_ranking_loss, triplet_ranking_loss
from pipeline.models.scan import cross_attention_scores
from pipeline.params import ParamError, validate
from pipeline.training.optimizers import SGD
from pipeline.training.recipes import resolve_settings
from pipeline.training.registry import build_method
from pipeline.training.schedule import epoch_lr, make_optimizer, set_epoch_lr
from pipeline.training.schema import method_train_settings
from instance_data import concept_data


def _unit(*xs: float) -> torch.Tensor:
    v = torch.tensor(xs, dtype=torch.float32)
    return v / v.norm()


# --- SCAN: LogSumExp aggregation, LeakyReLU attention ------------------------------------------------

def test_lse_aggregation_of_region_relevances():
    # One text of one word: every region attends only to it, so R_i = cos(v_i, w). Regions e1 and
    # (e1 + e2)/sqrt(2), word e1: R = (1, 1/sqrt(2)). LSE with temperature 5: log(e^5 + e^(5/sqrt2)) / 5.
    regions = torch.stack([_unit(1, 0, 0), _unit(1, 1, 0)])[None]
    words = _unit(1, 0, 0)[None, None]
    lengths = torch.tensor([1])
    fv, _ = cross_attention_scores(regions, words, lengths, lambda1=9.0, lambda2=9.0, text_grounded=False,
                                   aggregation="lse", lse_temperature=5.0)
    expected = math.log(math.exp(5.0) + math.exp(5.0 / math.sqrt(2))) / 5.0
    assert fv.item() == pytest.approx(expected, rel=1e-6)
    fv_mean, _ = cross_attention_scores(regions, words, lengths, lambda1=9.0, lambda2=9.0, text_grounded=False)
    assert fv_mean.item() == pytest.approx((1 + 1 / math.sqrt(2)) / 2, rel=1e-6)
    # F^S over the words of a text: one region, two real words and one padding word (ignored).
    words2 = torch.stack([_unit(1, 0, 0), _unit(0, 1, 0), torch.zeros(3)])[None]
    _, fs = cross_attention_scores(_unit(1, 1, 0)[None, None], words2, torch.tensor([2]), lambda1=9.0,
                                   lambda2=9.0, image_grounded=False, aggregation="lse", lse_temperature=2.0)
    # Each word attends to the single region: R_j = cos(w_j, v) = 1/sqrt(2) for both words.
    assert fs.item() == pytest.approx(math.log(2 * math.exp(2 / math.sqrt(2))) / 2, rel=1e-6)


def _one_region_two_words(alpha1: float, alpha2: float, cos2: float) -> float:
    """R(v, c) for v = e1, c = alpha1 e1 + alpha2 w2 with cos(e1, w2) = cos2."""
    dot = alpha1 + alpha2 * cos2
    norm = math.sqrt(alpha1 ** 2 + alpha2 ** 2 + 2 * alpha1 * alpha2 * cos2)
    return dot / norm


def test_leaky_relu_attention_changes_the_weights_of_negative_cosines():
    # One region v = e1; words w1 = e1 (cos 1) and w2 = -0.6 e1 + 0.8 e2 (cos -0.6). With one region the
    # normalisation over regions maps each cosine to its sign: relu -> (1, 0), LeakyReLU(0.1) -> (1, -1).
    # Softmax with lambda1 = 1 over the words: relu (e, 1) / (e + 1), leaky (e, 1/e) / (e + 1/e).
    regions = _unit(1, 0)[None, None]
    words = torch.stack([_unit(1, 0), torch.tensor([-0.6, 0.8])])[None]
    lengths = torch.tensor([2])
    e = math.e
    relu_expected = _one_region_two_words(e / (e + 1), 1 / (e + 1), -0.6)
    leaky_expected = _one_region_two_words(e / (e + 1 / e), (1 / e) / (e + 1 / e), -0.6)
    fv_relu, _ = cross_attention_scores(regions, words, lengths, lambda1=1.0, lambda2=1.0, text_grounded=False)
    fv_leaky, _ = cross_attention_scores(regions, words, lengths, lambda1=1.0, lambda2=1.0, text_grounded=False,
                                         activation="leaky_relu")
    assert fv_relu.item() == pytest.approx(relu_expected, rel=1e-6)
    assert fv_leaky.item() == pytest.approx(leaky_expected, rel=1e-6)
    assert abs(fv_leaky.item() - fv_relu.item()) > 1e-2


# --- SCAN precision ---------------------------------------------------------------------------------

def _near_tied_case():
    """One image, texts whose scores differ by ~1e-4: below bfloat16's resolution (2^-8 near 1)."""
    g = torch.Generator().manual_seed(0)
    d = 32
    region = _unit(*torch.randn(d, generator=g).tolist())
    texts = []
    for k in range(16):  # one word each, cosines 0.99, 0.9901, ... with the region
        noise = torch.randn(d, generator=g)
        noise = noise - (noise @ region) * region
        noise = noise / noise.norm()
        cos = 0.99 + 1e-4 * k
        texts.append(cos * region + math.sqrt(1 - cos ** 2) * noise)
    return region[None, None], torch.stack(texts)[:, None], torch.ones(16, dtype=torch.long)


def test_scan_scores_stay_fp32_under_autocast_where_bf16_changes_the_ranking():
    regions, words, lengths = _near_tied_case()
    kwargs = dict(lambda1=9.0, lambda2=9.0, text_grounded=False)
    fp32, _ = cross_attention_scores(regions, words, lengths, **kwargs)
    bf16, _ = cross_attention_scores(regions, words, lengths, dtype=torch.bfloat16, **kwargs)
    fp32_rank = torch.argsort(fp32[0], descending=True, stable=True)
    bf16_rank = torch.argsort(bf16[0].float(), descending=True, stable=True)
    assert fp32_rank.tolist() == list(range(15, -1, -1))          # the true order, text 15 first
    assert fp32_rank.tolist() != bf16_rank.tolist()               # a bf16 path changes it
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast, _ = cross_attention_scores(regions.bfloat16(), words.bfloat16().float(), lengths, **kwargs)
        fp32_again, _ = cross_attention_scores(regions, words, lengths, **kwargs)
    assert fp32_again.dtype == torch.float32
    assert torch.equal(fp32_again, fp32)
    assert under_autocast.dtype == torch.float32


# --- negatives ----------------------------------------------------------------------------------------

def test_diagonal_only_negatives_let_captions_of_one_image_be_negatives():
    # Texts 0 and 1 are captions of image 0 (rows 0, 0, 1). Scores: the other caption of image 0 is the
    # hardest "negative" of anchor 0 only when just the diagonal is excluded (the official code).
    scores = torch.tensor([[0.9, 0.8, 0.1], [0.7, 0.9, 0.2], [0.3, 0.1, 0.9]])
    rows = torch.tensor([0, 0, 1])
    m = 0.2
    distinct = rows[:, None] != rows[None, :]
    # Image anchors: row 0 -> diagonal: max(0.8, 0.1) -> 0.1 cost; distinct: col 2 -> 0. Written out:
    diag = (max(0, m - 0.9 + 0.8) + max(0, m - 0.9 + 0.7) + max(0, m - 0.9 + 0.3)      # image anchors
            + max(0, m - 0.9 + 0.7) + max(0, m - 0.9 + 0.8) + max(0, m - 0.9 + 0.2))    # text anchors
    assert triplet_ranking_loss(scores, m, None).item() == pytest.approx(diag)
    assert triplet_ranking_loss(scores, m, distinct).item() == pytest.approx(
        0 + 0 + max(0, m - 0.9 + 0.3) + 0 + 0 + max(0, m - 0.9 + 0.2))


def test_scan_negatives_option_reaches_the_loss():
    data = concept_data(n_images=8, seed=2)
    batch = data.pair_batch(torch.tensor([0, 1, 5, 10, 15])).to("cpu")   # 0 and 1: captions of image 0
    losses = {}
    for negatives in ("diagonal", "distinct_images"):
        params = validate({"methods": {"scan_i2t": {"d_model": 8, "negatives": negatives}}})
        torch.manual_seed(0)
        method = build_method("scan_i2t", params, data.info, word_vectors=data.word_vectors).eval()
        with torch.no_grad():
            loss, _ = method.training_loss(batch)
            fv, _ = method.pair_scores(method.encode_images(batch.images), method.encode_texts(batch.texts))
        mask = None if negatives == "diagonal" else batch.images.rows[:, None] != batch.texts.rows[None, :]
        assert loss.item() == pytest.approx(triplet_ranking_loss(fv, 0.2, mask).item(), rel=1e-5)
        losses[negatives] = loss.item()
    assert losses["diagonal"] >= losses["distinct_images"]


def test_hardest_negative_among_256_candidates():
    # 257 items, margin 1 and diagonal 1: every cost is the negative's score. Column j holds c_j = j/1000 off
    # the diagonal, so a text anchor costs c_j whichever image is drawn, and image anchor i costs the largest
    # c_j among its drawn candidates: with a pool of 256 (all of its negatives) max_{j != i} c_j.
    n = 257
    c = torch.arange(n, dtype=torch.float32) / 1000
    scores = c[None, :].repeat(n, 1)
    scores.fill_diagonal_(1.0)
    text_part = c.sum().item()
    hardest = sum((c[n - 1] if i != n - 1 else c[n - 2]).item() for i in range(n))  # row i: max_{j != i} c_j
    full = pooled_hardest_ranking_loss(scores, 1.0, pool=256, reduction="sum", generator=torch.Generator().manual_seed(0))
    assert full.item() == pytest.approx(hardest + text_part, rel=1e-5)
    one = pooled_hardest_ranking_loss(scores, 1.0, pool=1, reduction="sum", generator=torch.Generator().manual_seed(0))
    assert one.item() < full.item() - 1.0        # one random candidate is rarely the hardest
    # Texts of the anchor's own class are never candidates: make text 256 a caption of image 0.
    same_class = ~torch.eye(n, dtype=torch.bool)
    same_class[0, n - 1] = False
    masked = pooled_hardest_ranking_loss(scores, 1.0, same_class, pool=256, reduction="sum",
                                         generator=torch.Generator().manual_seed(0))
    row0_without = c[n - 2].item()
    # Only image anchor 0 changes (c_256 -> c_255); text anchor 256 draws among 255 images, all costing c_256.
    assert masked.item() == pytest.approx(hardest - c[n - 1].item() + row0_without + text_part, rel=1e-5)


# --- DSCMR label-count similarity -----------------------------------------------------------------------

def test_label_count_similarity_and_its_objective():
    y = torch.tensor([[1, 1, 0], [1, 1, 1], [0, 0, 1]])
    assert label_similarity(y, y, "label_count").tolist() == [[2, 2, 0], [2, 3, 1], [0, 1, 1]]
    assert label_similarity(y, y, "shares_label").tolist() == [[1, 1, 0], [1, 1, 1], [0, 1, 1]]
    # One image-text pair: z_image = z_text (cos 1, theta 0.5) with S = 2: the inter term is
    # log(1 + e^0.5) - 2 * 0.5; the intra terms (the item with itself) are the same.
    z = torch.tensor([[1.0, 0.0]])
    y1 = torch.tensor([[1, 1, 0]])
    term = math.log(1 + math.exp(0.5)) - 2 * 0.5
    assert imc_loss(z, z, y1, y1, "label_count").item() == pytest.approx(3 * term, rel=1e-6)
    assert imc_loss(z, z, y1, y1).item() == pytest.approx(3 * (math.log(1 + math.exp(0.5)) - 0.5), rel=1e-6)


# --- Semantic Sharing context loss ------------------------------------------------------------------------

def test_sigmoid_cross_entropy_context_loss():
    # sigmoid(0) = 0.5 for both classes: -log softmax(0.5, 0.5)[0] = log 2.
    assert masked_prediction_loss(torch.zeros(1, 2), torch.tensor([0]), "sigmoid").item() == pytest.approx(math.log(2))
    # Saturated logits (+40, -40) -> sigmoid (1, 0): -log(e / (e + 1)) = log(1 + 1/e), never near 0.
    big = torch.tensor([[40.0, -40.0]])
    assert masked_prediction_loss(big, torch.tensor([0]), "sigmoid").item() == pytest.approx(math.log(1 + 1 / math.e))
    assert masked_prediction_loss(big, torch.tensor([0]), "logits").item() < 1e-6
    # Logits (1, 2, 3), target 2: -log(e^s3 / sum e^sk) with s = sigmoid(z).
    z = torch.tensor([[1.0, 2.0, 3.0]])
    s = [1 / (1 + math.exp(-v)) for v in (1.0, 2.0, 3.0)]
    expected = -math.log(math.exp(s[2]) / sum(math.exp(v) for v in s))
    assert masked_prediction_loss(z, torch.tensor([2]), "sigmoid").item() == pytest.approx(expected, rel=1e-6)


# --- learning-rate decay ------------------------------------------------------------------------------------

def test_lr_decays_at_the_given_epoch():
    settings = {"lr": 2e-4, "lr_decay_epoch": 15, "lr_decay_factor": 0.1, "optimizer": "adam", "weight_decay": 0.0}
    lrs = [epoch_lr(settings, e) for e in range(30)]          # 0-based epochs of a 30-epoch run
    assert lrs[:15] == [2e-4] * 15
    assert lrs[15:] == pytest.approx([2e-5] * 15)
    assert epoch_lr({**settings, "lr_decay_epoch": 0}, 29) == 2e-4
    w = torch.nn.Parameter(torch.zeros(2))
    opt = make_optimizer([w], settings)
    assert set_epoch_lr(opt, settings, 15) == pytest.approx(2e-5) and opt.param_groups[0]["lr"] == pytest.approx(2e-5)
    assert set_epoch_lr(opt, settings, 3) == 2e-4                # a resume before the decay restores it
    sgd = make_optimizer([w], {**settings, "optimizer": "sgd_nesterov", "momentum": 0.9})
    assert isinstance(sgd, SGD) and sgd.defaults["nesterov"]


# --- recipes ---------------------------------------------------------------------------------------------------

def _with_datasets(methods: dict, train: dict | None = None) -> dict:
    return validate({"datasets": ["shapes", "f30k"], "methods": methods, "train": train or {"epochs": 3},
                     "data": {"shapes": {"kind": "shapes"}, "f30k": {"kind": "flickr30k"}}})


def test_recipe_values_per_dataset_and_explicit_values_win():
    params = _with_datasets({"scan_i2t": {"train": {"lr": 1e-3}}})
    shapes = method_train_settings(params, "scan_i2t", "shapes")
    assert (shapes["epochs"], shapes["lr_decay_epoch"], shapes["batch_size"]) == (3, 0, 64)  # embedded sizes kept
    f30k = method_train_settings(params, "scan_i2t", "f30k")
    assert (f30k["epochs"], f30k["lr_decay_epoch"], f30k["batch_size"]) == (30, 15, 128)
    assert f30k["lr"] == 1e-3  # the method's own override wins over the recipe's 2e-4
    official = resolve_settings(params, "scan_i2t", "flickr30k")
    assert (official["aggregation"], official["lse_temperature"], official["attention_activation"],
            official["negatives"]) == ("lse", 5.0, "leaky_relu", "diagonal")
    assert resolve_settings(params, "scan_i2t", "coco")["lse_temperature"] == 20.0
    params = _with_datasets({"scan_i2t": {"recipe": "paper", "lse_temperature": 3.0}})
    paper = resolve_settings(params, "scan_i2t", "flickr30k")
    assert (paper["aggregation"], paper["attention_activation"], paper["lse_temperature"]) == ("mean", "relu", 3.0)
    dual = _with_datasets({})
    assert resolve_settings(dual, "dual_path", "coco")["loss_weights"] == [2.0, 1.0, 0.1]
    assert resolve_settings(dual, "dual_path", "shapes")["loss_weights"] == [1.0, 1.0, 1.0]


def test_official_weights_and_schedules_per_dataset_kind():
    # Each value per kind as the official scripts give it (recipes.py names the script of each).
    params = _with_datasets({"scan_consistency": {}, "dscmr": {"recipe": "official"}})
    for recipe in ("official", "paper"):
        params["methods"]["scan_consistency"]["recipe"] = recipe
        lambda_con = {kind: resolve_settings(params, "scan_consistency", kind)["lambda_con"]
                      for kind in ("flickr30k", "coco", "flickr8k", "shapes")}
        assert lambda_con == {"flickr30k": 1.0, "coco": 0.3, "flickr8k": 0.3, "shapes": 0.3}
    written = _with_datasets({"scan_consistency": {"lambda_con": 0.7}})
    assert resolve_settings(written, "scan_consistency", "flickr30k")["lambda_con"] == 0.7  # written wins
    # DSCMR: lr 1e-4 and batch 100 (loop sizes) on real data; shapes keeps its train section's lr.
    assert method_train_settings(params, "dscmr", "f30k")["lr"] == 1e-4
    assert method_train_settings(params, "dscmr", "shapes")["lr"] == params["train"]["lr"]
    # Dual-path: Flickr30k stage II weights 0 : 1 : 0.1, stage I 240 epochs, then 60 with x0.1 after 40 of them;
    # COCO 2 : 1 : 0.1, stage I 90, then 21 with the decay after 15; the ranking term halved on every kind.
    dual = _with_datasets({})
    f30k = resolve_settings(dual, "dual_path", "flickr30k")
    assert (f30k["loss_weights"], f30k["stage1_epochs"], f30k["ranking_scale"]) == ([0.0, 1.0, 0.1], 240, 0.5)
    loop = method_train_settings(dual, "dual_path", "f30k")
    assert (loop["epochs"], loop["lr_decay_epoch"], loop["lr"], loop["batch_size"]) == (300, 280, 0.1, 32)
    lrs = [epoch_lr(loop, e) for e in range(300)]
    assert lrs[:280] == [0.1] * 280 and lrs[280:] == pytest.approx([0.01] * 20)
    coco = resolve_settings(dual, "dual_path", "coco")
    assert (coco["loss_weights"], coco["stage1_epochs"]) == ([2.0, 1.0, 0.1], 90)
    shapes = resolve_settings(dual, "dual_path", "shapes")
    assert shapes["stage1_epochs"] is None and shapes["ranking_scale"] == 0.5
    paper = _with_datasets({"dual_path": {"recipe": "paper"}})
    assert resolve_settings(paper, "dual_path", "coco")["ranking_scale"] == 1.0
    # A run of dual_path on a kind with no recipe stage I needs it written: `xmr check-params` names the key.
    from pipeline.training.schema import check_run_settings

    with pytest.raises(ParamError, match=r"methods\.dual_path\.stage1_epochs.*kind shapes"):
        check_run_settings(validate({"datasets": ["shapes"], "data": {"shapes": {"kind": "shapes"}}}), ["dual_path"])


def test_official_ranking_term_weighs_half_of_the_mean_over_all_anchor_pairs():
    # All scores 0, margin 1, batch 4: every anchor's hinge is max(0, 1 - 0 + 0) = 1.
    # Official RankLoss: the first 2 pairs are anchors (the last 2 give their negatives), each with an
    # image-anchor and a text-anchor term: sum 2 * (1 + 1) = 4, divided by the batch 4 by MatConvNet -> 1.
    # xmr: all 4 pairs, (4 + 4) / 4 = 2, times the official ranking_scale 0.5 -> 1.
    scores = torch.zeros(4, 4)
    official = sum(max(0.0, 1.0 - (0.0 - 0.0)) * 2 for _ in range(2)) / 4
    xmr_mean = triplet_ranking_loss(scores, 1.0, mining="hardest", reduction="mean")
    assert xmr_mean.item() == 2.0 and official == 1.0
    dual = validate({"methods": {"dual_path": {"embed_dim": 8, "text_length": 6, "text_blocks": [1],
                                               "text_widths": [8], "stage1_epochs": 0, "dropout": 0.0}}})
    assert resolve_settings(dual, "dual_path")["ranking_scale"] * xmr_mean.item() == official
    # In the model: the total is the instance terms plus weight x 0.5 x the ranking mean.
    data = concept_data(n_images=6, seed=3)
    torch.manual_seed(0)
    method = build_method("dual_path", dual, data.info, word_vectors=data.word_vectors).eval()
    loss, parts = method.training_loss(data.pair_batch(torch.tensor([0, 6, 12, 18])).to("cpu"))
    expected = parts["instance_visual"] + parts["instance_textual"] + 0.5 * parts["ranking"]
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_lambda_combines_with_the_recipe_scale():
    for recipe, kind, scale in (("official", "shapes", 0.005), ("paper", "shapes", 1.0), ("paper", "coco", 0.1)):
        params = validate({"lambda": 0.2, "datasets": ["d"], "data": {"d": {"kind": kind, **({"root": "x"} if kind == "coco" else {})}},
                           "methods": {"ss": {"recipe": recipe}}})
        assert resolve_settings(params, "ss", kind)["lambda_scale"] == scale


@pytest.mark.parametrize("methods, train, key", [
    ({"ss": {"recipe": "offical"}}, None, "methods.ss.recipe"),
    ({"dscmr": {"lse_temperature": 5.0}}, None, "methods.dscmr.lse_temperature"),
    ({"cca": {"recipe": "official"}}, None, "methods.cca.recipe"),
    ({"scan_t2i": {"lse_temperature": 0.0}}, None, "methods.scan_t2i.lse_temperature"),
    ({"scan_i2t": {"lse_temperature": -1.0}}, None, "methods.scan_i2t.lse_temperature"),
    ({"scan_i2t": {"aggregation": "max"}}, None, "methods.scan_i2t.aggregation"),
    ({"scan_i2t": {"train": {"lr_decay_epoch": 5}}}, None, "methods.scan_i2t.train.lr_decay_epoch"),
    ({}, {"epochs": 3, "lr_decay_epoch": 4}, "train.lr_decay_epoch"),
    ({"dscmr": {"label_similarity": "jaccard"}}, None, "methods.dscmr.label_similarity"),
    ({"ss": {"context_loss": "softmax"}}, None, "methods.ss.context_loss"),
    ({"dual_path": {"ranking_negatives": "semi"}}, None, "methods.dual_path.ranking_negatives"),
])
def test_bad_recipe_input_names_the_key(methods, train, key):
    with pytest.raises(ParamError, match=key.replace(".", r"\.")):
        validate({"methods": methods, "train": train or {"epochs": 3}})


def test_decay_epoch_from_a_recipe_past_the_last_epoch_names_the_recipe():
    # Flickr30k's official SCAN decay (epoch 15) with 10 epochs written for the method.
    with pytest.raises(ParamError, match=r"methods\.scan_i2t\.recipe"):
        validate({"datasets": ["f30k"], "data": {"f30k": {"kind": "flickr30k"}},
                  "methods": {"scan_i2t": {"train": {"epochs": 10}}}})


def test_text_side_options_are_checked():
    assert validate({"text": {"punctuation": "keep", "start_end_tokens": True, "min_count": 4}})["text"]["punctuation"] == "keep"
    with pytest.raises(ParamError, match=r"text\.punctuation"):
        validate({"text": {"punctuation": "strip"}})


def test_dcca_one_pass_final_cca_uses_the_covariances_of_all_training_outputs():
    import numpy as np

    data = concept_data(n_images=12, seed=3)
    params = validate({"methods": {"dcca": {"hidden": [8], "out_dim": 3, "final_cca": "one_pass"}}})
    torch.manual_seed(0)
    method = build_method("dcca", params, data.info, word_vectors=data.word_vectors).eval()
    chunks = [torch.arange(0, 20), torch.arange(20, 45)]
    method.after_epoch(data.pair_batch(c).to("cpu") for c in chunks)
    with torch.no_grad():
        batch = data.pair_batch(torch.arange(0, 45)).to("cpu")
        h1 = method._outputs(images=batch.images).double().numpy()
        h2 = method._outputs(texts=batch.texts).double().numpy()
    joint = np.cov(np.hstack([h1, h2]).T)                       # unbiased, over all 45 pairs
    assert np.allclose(method.s11.numpy(), joint[:3, :3]) and np.allclose(method.s22.numpy(), joint[3:, 3:])
    assert np.allclose(method.s12.numpy(), joint[:3, 3:]) and np.allclose(method.mean1.numpy(), h1.mean(0))
    running = validate({"methods": {"dcca": {"hidden": [8], "out_dim": 3, "final_cca": "running"}}})
    other = build_method("dcca", running, data.info, word_vectors=data.word_vectors)
    other.after_epoch(data.pair_batch(c).to("cpu") for c in chunks)
    assert not bool(other.stats_seen)                           # running: the pass changes nothing
    with pytest.raises(ParamError, match=r"methods\.dcca\.final_cca"):
        validate({"methods": {"dcca": {"final_cca": "two_pass"}}})


# --- dual-path: per-layer lr multipliers, head layout, test-time flip (issue 15, left options) -------------

_DUAL_SMALL = {"embed_dim": 32, "dropout": 0.1, "text_length": 12, "text_blocks": [1, 1, 1],
               "text_widths": [16, 32, 32], "stage1_epochs": 1}


def _dual_path(**options):
    data = concept_data(n_images=4, seed=1)
    params = validate({"methods": {"dual_path": {**_DUAL_SMALL, **options}}})
    torch.manual_seed(0)
    return build_method("dual_path", params, data.info, word_vectors=data.word_vectors), data


def test_lr_multipliers_give_each_parameter_group_its_rate():
    # Official (coco_word2_*.m): word table and ResNet-50 x1e-3, new layers x1, base lr 0.1; on COCO and
    # Flickr30k only (the multipliers are relative to the official lr 0.1), none on shapes.
    params = _with_datasets({})
    assert resolve_settings(params, "dual_path", "coco")["lr_multipliers"] == {"backbone": 1e-3, "words": 1e-3, "new": 1.0}
    assert resolve_settings(params, "dual_path", "shapes")["lr_multipliers"] is None
    from pipeline.models.dual_path import LR_GROUPS
    from pipeline.training.schema import DUAL_PATH_LR_GROUPS

    assert LR_GROUPS == DUAL_PATH_LR_GROUPS
    method, _ = _dual_path(lr_multipliers={"words": 0.001})
    groups = method.lr_groups()
    assert [m for m, _ in groups] == [1.0, 0.001, 1.0]            # backbone (none with RoI features), words, new
    ids = [id(p) for _, ps in groups for p in ps]
    assert sorted(ids) == sorted(id(p) for p in method.parameters())  # every parameter exactly once
    assert [id(p) for p in groups[1][1]] == [id(method.text_cnn.lookup.weight)]
    # Hand case: two scalars with gradient 1, SGD + Nesterov (momentum 0.9), lr 0.1. First step: buffer = g,
    # update g + 0.9 g = 1.9 g, so w -= 0.1 * mult * 1.9; after the decay epoch the rate is 0.01 * mult.
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    settings = {"lr": 0.1, "weight_decay": 0.0, "optimizer": "sgd_nesterov", "momentum": 0.9,
                "lr_decay_epoch": 2, "lr_decay_factor": 0.1}
    opt = make_optimizer([(0.001, [a]), (1.0, [b])], settings)
    set_epoch_lr(opt, settings, 0)
    (a.sum() + b.sum()).backward()
    opt.step()
    assert a.item() == pytest.approx(-0.1 * 0.001 * 1.9) and b.item() == pytest.approx(-0.1 * 1.9)
    assert set_epoch_lr(opt, settings, 2) == pytest.approx(0.01)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1e-5, 0.01])
    # No multipliers: one group, as before (checkpoints keep their optimiser layout).
    plain, _ = _dual_path()
    assert len(plain.lr_groups()) == 1


@pytest.mark.parametrize("options, key", [
    ({"lr_multipliers": {"heads": 0.1}}, "methods.dual_path.lr_multipliers"),
    ({"lr_multipliers": {"words": -1.0}}, "methods.dual_path.lr_multipliers.words"),
    ({"head": "wide"}, "methods.dual_path.head"),
    ({"test_flip": True}, "methods.dual_path.test_flip"),            # RoI features have no mirror image
    ({"graph": "knn"}, "methods.jfssl.graph"),
    ({"heat_t": 0.0}, "methods.jfssl.heat_t"),
])
def test_bad_left_options_name_the_key(options, key):
    method = "jfssl" if key.startswith("methods.jfssl") else "dual_path"
    with pytest.raises(ParamError, match=key.replace(".", r"\.") + "'"):
        validate({"methods": {method: options}})


def test_official_head_layout_shapes():
    method, data = _dual_path(head="official")
    kinds = [type(m).__name__ for m in method.image_head]
    assert kinds == ["Linear", "_BatchNorm", "ReLU", "Linear", "_BatchNorm", "ReLU"]
    assert [type(m).__name__ for m in method.text_head] == ["Linear", "_BatchNorm", "ReLU"]
    assert all(m.bias is None for m in (*method.image_head, *method.text_head) if isinstance(m, torch.nn.Linear))
    # Wide first blocks: widths 16, 32, 32 reduce to 8 (half, first stage), 32, 32 (full); paper: a quarter.
    assert [blk.reduce.out_channels for blk in method.text_cnn.blocks] == [8, 32, 32]
    paper, _ = _dual_path(head="paper")
    assert [blk.reduce.out_channels for blk in paper.text_cnn.blocks] == [4, 8, 8]
    assert type(paper.image_head[-1]).__name__ == "Linear"
    method.eval()
    batch = data.pair_batch(torch.arange(0, 20, 5)).to("cpu")
    with torch.no_grad():
        f_img, f_txt = method.encode_images(batch.images), method.encode_texts(batch.texts)
    assert f_img.shape == f_txt.shape == (4, 32)
    assert (f_img >= 0).all() and (f_txt >= 0).all()                 # both end in relu
    # Max pooling over text positions (official), mean in the paper layout.
    ids = torch.randint(1, data.info.vocab_size, (2, 12))
    with torch.no_grad():
        feats = method.text_cnn.blocks(method.text_cnn.lookup_bn(method.text_cnn.lookup(ids).transpose(1, 2)))
        assert torch.equal(method.text_cnn(ids), feats.amax(dim=2))


def test_test_time_flip_averages_the_image_and_its_mirror():
    # A stand-in backbone reading the first pixel row; identity head. Row (1, 2, 3, 4, ...) and its mirror
    # average to a constant (d + 1) / 2.
    method, data = _dual_path(test_flip=None)
    d = data.info.feature_dim
    row = torch.arange(1.0, d + 1)

    class FirstRow(torch.nn.Module):
        def forward(self, pixels):
            return pixels[:, 0, 0, :]

    class Pixels:
        def load(self, rows, train):
            return row.expand(len(rows), 3, 1, d).clone()

    method.backbone, method.images, method.image_head = FirstRow(), Pixels(), torch.nn.Identity()
    method.eval()
    images = data.pair_batch(torch.arange(0, 10, 5)).to("cpu").images
    method.settings["test_flip"] = True
    assert torch.allclose(method.encode_images(images), torch.full((2, d), (d + 1) / 2))
    method.settings["test_flip"] = False
    assert torch.equal(method.encode_images(images)[0], row)
    method.train()
    method.settings["test_flip"] = True
    assert torch.equal(method.encode_images(images)[0], row)          # training sees no flip


# --- JFSSL graph weights: xmr | public_port ---------------------------------------------------------------

def test_jfssl_public_port_graph_on_a_hand_case():
    import numpy as np

    from pipeline.models.baselines.jfssl import graph_quadratic
    from pipeline.models.baselines.linalg import knn_graph, label_graph_products

    # Three pairs (six points), 1-d features, k = 1, t = 0.5. Images 0, 1, 3: nearest neighbours 0-1 (d 1),
    # 1-0, 3-1 (d 2) -> W11[0,1] = e^-2, W11[1,2] = e^-4. Texts 0, 2, 5: 0-2 (d 2), 2-0, 5-2 (d 3) ->
    # W22[0,1] = e^-4, W22[1,2] = e^-6. Labels {a}, {a,b}, {b}: Y Y^T = [[1,1,0],[1,2,1],[0,1,1]], / max 2.
    x1, x2 = np.array([[0.0], [1.0], [3.0]]), np.array([[0.0], [2.0], [5.0]])
    labels = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    e = np.exp
    w11 = np.array([[0, e(-2), 0], [e(-2), 0, e(-4)], [0, e(-4), 0]])
    w22 = np.array([[0, e(-4), 0], [e(-4), 0, e(-6)], [0, e(-6), 0]])
    w12 = np.array([[0.5, 0.5, 0], [0.5, 1, 0.5], [0, 0.5, 0.5]])
    np.testing.assert_allclose(knn_graph(x1, 1, heat_t=0.5).toarray(), w11, rtol=1e-6)
    np.testing.assert_allclose(knn_graph(x2, 1, heat_t=0.5).toarray(), w22, rtol=1e-6)
    cross, rows = label_graph_products(x1, x2, labels, counts_over_max=True)
    np.testing.assert_allclose(rows, [1.0, 2.0, 1.0])
    np.testing.assert_allclose(cross, x1.T @ w12 @ x2)
    w = np.block([[w11, w12], [w12.T, w22]])                             # no per-block rescaling
    x = np.block([[x1, np.zeros((3, 1))], [np.zeros((3, 1)), x2]])
    expected = x.T @ (np.diag(w.sum(1)) - w) @ x
    np.testing.assert_allclose(graph_quadratic(x1, x2, labels, 1, "public_port", 0.5), expected, rtol=1e-6)
    # xmr: 0/1 edges, each block rescaled to mean degree 1 (W11 degrees 1, 2, 1; W12 "shares a label").
    b11 = (w11 > 0) / (4 / 3)
    b22 = (w22 > 0) / (4 / 3)
    b12 = (w12 > 0) / (7 / 3)
    wx = np.block([[b11, b12], [b12.T, b22]])
    np.testing.assert_allclose(graph_quadratic(x1, x2, labels, 1, "xmr"), x.T @ (np.diag(wx.sum(1)) - wx) @ x,
                               rtol=1e-6)
    # Recipes: the public port by default (what the published baseline numbers ran), xmr's on "paper".
    assert resolve_settings(validate({}), "jfssl")["graph"] == "public_port"
    assert resolve_settings(validate({"methods": {"jfssl": {"recipe": "paper"}}}), "jfssl")["graph"] == "xmr"
