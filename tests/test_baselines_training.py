"""Every Table-1 baseline trains through the shared loop on tiny labelled data, beats its own untrained
(random-embedding) model on validation NDCG, and reloads from its checkpoint to the same metric."""
import copy

import numpy as np
import pytest
import torch

from retrieval_fixtures import make_dataset
from pipeline.params import ParamError, validate
from pipeline.training.checkpoint import load_model
from pipeline.training.data import RetrievalData
from pipeline.training.loop import train_method
from pipeline.training.registry import build_method
from pipeline.training.scoring import score_split, split_metrics

SMALL = {
    "cca": {"n_components": 4},
    "lcfs": {},
    "jfssl": {"knn": 5},
    "dcca": {"hidden": [64], "out_dim": 6, "activation": "relu"},
    "dscmr": {"hidden": 32, "common_dim": 16},
    "scml": {"hidden": 32},
    "vilbert": {"d_model": 32, "heads": 4, "d_ff": 64, "layers": 1, "co_layers": 1, "dropout": 0.0},
}
EPOCHS = 4
TRAIN = {"dcca": {"batch_size": 32, "epochs": 6}}  # the correlation objective wants larger batches


@pytest.fixture(scope="module")
def data():
    table, store, text = make_dataset(n_images=160, n_val=30, n_test=30, captions_per_image=2)
    return RetrievalData(table, store, text, cache_splits=("train", "val"))


pytestmark = pytest.mark.usefixtures("one_thread")


def params_for(name, **overrides):
    train = {"batch_size": 16, "lr": 3e-3, "epochs": EPOCHS, "device": "cpu", "eval_batch_size": 64, **TRAIN.get(name, {})}
    return validate({"train": train, "methods": {name: {**SMALL[name], **overrides}}})


def val_ndcg(method, data, params):
    scores = score_split(method, data, "val", metrics_params=params["metrics"], dataset="synthetic", batch_size=64,
                         device=torch.device("cpu"))
    return split_metrics(scores, data, metrics_params=params["metrics"], dataset="synthetic", protocol="all")["ndcg_ave"]


def untrained_ndcg(name, params, data):
    """NDCG of the same model with random weights (closed form: random projections)."""
    torch.manual_seed(params["seed"])
    method = build_method(name, params, data.info, word_vectors=np.asarray(data.text.embeddings))
    if getattr(method, "closed_form", False):
        from pipeline.models.baselines.closed_form import training_arrays
        method.fit_arrays(*training_arrays(method, data))
        for side in ("image", "text"):
            proj = getattr(method, f"{side}_projection")
            proj.copy_(torch.randn(proj.shape, generator=torch.Generator().manual_seed(1)))
    elif name == "dcca":  # output statistics of the untrained networks, no optimizer step
        method.train()
        method.training_loss(data.pair_batch(data.split_items("train").captions[:64]).to("cpu"))
    return val_ndcg(method, data, params)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_baseline_learns_and_round_trips_its_checkpoint(name, data, tmp_path):
    params = params_for(name)
    result = train_method(name, params, data, tmp_path / "model", tmp_path / "history.json", dataset="synthetic",
                          progress=False, log=lambda _: None)
    closed_form = name in ("cca", "lcfs", "jfssl")
    assert result.epochs_done == (1 if closed_form else params["train"]["epochs"])
    random_value = untrained_ndcg(name, params, data)
    assert result.best_value > random_value + 5.0, (name, result.best_value, random_value)

    loaded, config = load_model(tmp_path / "model", name, data.info)
    assert config["method"] == name and config["epoch"] == result.best_epoch
    assert val_ndcg(loaded, data, params) == pytest.approx(result.best_value, abs=1e-6)


def test_closed_form_fit_is_not_redone_and_is_redone_for_other_params(data, tmp_path):
    logs = []
    params = params_for("lcfs")
    first = train_method("lcfs", params, data, tmp_path / "m", tmp_path / "h.json", dataset="synthetic",
                         progress=False, log=logs.append)
    again = train_method("lcfs", params, data, tmp_path / "m", tmp_path / "h.json", dataset="synthetic",
                         progress=False, log=logs.append)
    assert again.resumed_at == 1 and again.best_value == first.best_value and "already fitted" in logs[-1]
    other = train_method("lcfs", params_for("lcfs", lambda_l21=0.5), data, tmp_path / "m", tmp_path / "h.json",
                         dataset="synthetic", progress=False, log=logs.append)
    assert other.resumed_at == 0


def test_dcca_running_statistics_give_whitened_correlated_outputs(data):
    params = params_for("dcca", stats_momentum=1.0, reg=1e-9)
    torch.manual_seed(0)
    method = build_method("dcca", params, data.info, word_vectors=np.asarray(data.text.embeddings))
    batch = data.pair_batch(data.split_items("train").captions).to("cpu")
    method.train()
    method.training_loss(batch)  # momentum 1: the statistics are this batch's
    method.eval()
    with torch.no_grad():
        a, b = method.encode_images(batch.images).double(), method.encode_texts(batch.texts).double()
    a, b = a - a.mean(0), b - b.mean(0)
    n = len(a) - 1
    # canonical variates of the batch: whitened, and pairwise correlated by the canonical correlations
    np.testing.assert_allclose((a.T @ a / n).numpy(), np.eye(6), atol=1e-4)
    np.testing.assert_allclose((b.T @ b / n).numpy(), np.eye(6), atol=1e-4)
    np.testing.assert_allclose((a.T @ b / n).numpy(), np.diag(method.canonical_correlations().numpy()), atol=1e-4)


def test_dcca_refuses_to_encode_without_statistics(data):
    method = build_method("dcca", params_for("dcca"), data.info)
    with pytest.raises(ValueError, match="no output statistics"):
        method.encode_images(data.image_batch(np.arange(2)).to("cpu"))


def test_vilbert_pair_scores_agree_with_the_score_matrix(data):
    for co_layers in (1, 2):
        torch.manual_seed(0)
        params = params_for("vilbert", co_layers=co_layers, pair_chunk=7)
        method = build_method("vilbert", params, data.info, word_vectors=np.asarray(data.text.embeddings)).eval()
        with torch.no_grad():
            v = method.encode_images(data.image_batch(np.arange(4)).to("cpu"))
            w, lengths = method.encode_texts(data.text_batch(np.arange(6)))
            matrix = method.similarity(v, (w, lengths))
            ii, tt = torch.meshgrid(torch.arange(4), torch.arange(6), indexing="ij")
            pairs = method.pair_scores(v, w, lengths, ii.reshape(-1), tt.reshape(-1)).view(4, 6)
            # a caption scored alone (no padding from longer captions) gets the same score
            w1, l1 = method.encode_texts(data.text_batch(np.array([5])))
            alone = method.similarity(v, (w1, l1))[:, 0]
        assert matrix.shape == (4, 6)
        torch.testing.assert_close(matrix, pairs, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(alone, matrix[:, 5], rtol=1e-4, atol=1e-4)


def test_vilbert_alignment_loss_ignores_distractors_of_the_same_image(data):
    torch.manual_seed(0)
    method = build_method("vilbert", params_for("vilbert", negatives=3), data.info)
    same_image = np.flatnonzero(data.caption_rows == 0)
    batch = data.pair_batch(np.repeat(same_image, 4)[:4]).to("cpu")  # every caption belongs to image 0
    loss, _ = method.training_loss(batch)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)  # only the true pair remains in each softmax
    label = build_method("vilbert", params_for("vilbert", objective="label"), data.info)
    loss, _ = label.training_loss(batch)  # all candidates are positives: BCE towards 1
    assert 0 < loss.item() < 5


def test_scml_meta_step_is_first_order_through_the_sequence(data):
    params = params_for("scml", order="image_text", inner_lr=0.5)
    torch.manual_seed(0)
    method = build_method("scml", params, data.info)
    batch = data.pair_batch(data.split_items("train").captions[:16]).to("cpu")
    loss, parts = method.training_loss(batch)
    loss.backward()
    got = {k: p.grad.clone() for k, p in method.unified.named_parameters()}

    # by hand: SGD step on the image loss, then on the text loss, then both losses at the end point
    from torch.func import functional_call
    from pipeline.models.baselines.inputs import pooled_regions
    from pipeline.models.baselines.scml import multilabel_loss
    ref = copy.deepcopy(method)
    ref.zero_grad()
    with torch.no_grad():
        xi = ref.image_net(pooled_regions(batch.images))
        xt = ref.text_net(ref.captions(batch.texts))
    w = {k: p.detach().clone().requires_grad_(True) for k, p in ref.unified.named_parameters()}
    for x, y in ((xi, batch.images.labels), (xt, batch.texts.labels)):
        g = torch.autograd.grad(multilabel_loss(functional_call(ref.unified, w, (x,)), y), list(w.values()))
        w = {k: (p - 0.5 * gi).detach().requires_grad_(True) for (k, p), gi in zip(w.items(), g)}
    end = multilabel_loss(functional_call(ref.unified, w, (xi,)), batch.images.labels) + \
        multilabel_loss(functional_call(ref.unified, w, (xt,)), batch.texts.labels)
    assert loss.item() == pytest.approx(end.item(), rel=1e-5)
    expected = torch.autograd.grad(end, list(w.values()))
    for (k, g), e in zip(got.items(), expected):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-6)
    assert set(parts) == {"inner_image", "inner_text", "image", "text"}


def test_dscmr_objective_combines_its_three_terms(data):
    params = params_for("dscmr", alpha=0.3, beta=0.7)
    method = build_method("dscmr", params, data.info)
    loss, parts = method.training_loss(data.pair_batch(np.arange(8)).to("cpu"))
    assert loss.item() == pytest.approx((parts["label_space"] + 0.3 * parts["common_space"]
                                         + 0.7 * parts["invariance"]).item(), rel=1e-6)


@pytest.mark.parametrize("section, message", [
    ({"cca": {"text_features": "tfidf"}}, "methods.cca.text_features"),
    ({"cca": {"solver": "nipals"}}, "methods.cca.solver"),
    ({"dcca": {"top_k": 20}}, "methods.dcca.top_k"),
    ({"dcca": {"hidden": []}}, "methods.dcca.hidden"),
    ({"scml": {"order": "random"}}, "methods.scml.order"),
    ({"vilbert": {"heads": 5}}, "methods.vilbert.heads"),
    ({"lcfs": {"lambda_l21": -1.0}}, "methods.lcfs.lambda_l21"),
    ({"jfssl": {"knn": 0}}, "methods.jfssl.knn"),
    ({"dscmr": {"bogus": 1}}, "methods.dscmr.bogus"),
])
def test_bad_baseline_parameters_name_the_key(section, message):
    with pytest.raises(ParamError, match=message.replace(".", r"\.")):
        validate({"methods": section})


def test_label_predicting_baselines_give_probabilities_for_micro_f1(data, tmp_path):
    from pipeline.training.scoring import classify_split
    items = data.split_items("val")
    for name in ("lcfs", "dscmr", "scml"):
        params = params_for(name)
        torch.manual_seed(0)
        method = build_method(name, params, data.info, word_vectors=np.asarray(data.text.embeddings))
        if name == "lcfs":
            from pipeline.models.baselines.closed_form import training_arrays
            method.fit_arrays(*training_arrays(method, data))
        probs = classify_split(method, data, items, batch_size=64, device=torch.device("cpu"))
        assert probs is not None
        image_p, text_p = probs
        assert image_p.shape == (len(items.image_rows), data.info.num_labels)
        assert text_p.shape == (len(items.captions), data.info.num_labels)
        assert float(np.min(image_p)) >= 0 and float(np.max(text_p)) <= 1
        if name == "lcfs":  # the fitted regression predicts the labels: F1 well above chance
            from pipeline.metrics import micro_f1
            assert micro_f1(image_p, data.labels[items.image_rows], 0.5, from_logits=False) > 0.6
    for name in ("cca", "dcca", "vilbert"):
        method = build_method(name, params_for(name), data.info)
        assert method.classify_images(data.image_batch(np.arange(2)).to("cpu")) is None
