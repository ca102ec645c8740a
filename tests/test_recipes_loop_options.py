"""The rest of issue 15's official behaviours, on small hand-computed cases written from the facts in
../shared/notes/reference.md: the Semantic Sharing official input embedding, Adam betas (DSCMR),
text-only gradient clipping and selection on the training loss (Semantic Sharing), SCAN's COCO
validation on the first 1,000 images; and their params checks."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.models.encoder import OfficialLayerNorm, TransformerEncoder
from pipeline.models.segments import ImageSegments, TextSegments
from pipeline.params import ParamError, validate
from pipeline.training.data import RetrievalData
from pipeline.training.loop import clipped_parameters, train_method
from pipeline.training.recipes import recipe_train, resolve_settings
from pipeline.training.registry import build_method, method_class, rebuild_method
from pipeline.training.schedule import make_optimizer
from pipeline.training.schema import METHOD_SCHEMAS, TEXT_CLIP_METHODS
from retrieval_fixtures import make_dataset, small_params

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    return RetrievalData(*make_dataset(), cache_splits=("train", "val"))


def _set_linear(layer: nn.Linear, weight, bias) -> None:
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
        layer.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))


# --- Semantic Sharing input embedding ----------------------------------------------------------------

def test_official_image_input_halves_the_sum_and_scales_the_box_projection_bias_included():
    # d = 2, features 2-d. psi1 = identity; psi2 has zero weights and bias (3, -5), so its output is the bias.
    # official: ((-1, 2) + 1e-4 * (3, -5)) / 2 = (-0.49985, 0.99975): the 1e-4 scales psi2's bias too, the
    # sum is halved, nothing else (no relu, no norm, and no dropout although dropout is 0.5 in train mode).
    # paper: relu((-1, 2) + (3, -5)) = (2, 0) -> LayerNorm -> (1, -1) (up to its epsilon).
    feats, boxes = torch.tensor([[[-1.0, 2.0]]]), torch.tensor([[[0.5, 0.5, 1.0, 1.0, 0.25]]])
    out = {}
    for form in ("official", "paper"):
        seg = ImageSegments(2, 2, "relu", 0.5, form)
        _set_linear(seg.psi1, torch.eye(2), [0.0, 0.0])
        _set_linear(seg.psi2, torch.zeros(2, 5), [3.0, -5.0])
        out[form] = seg.eval()(feats, boxes)[0, 0]
        if form == "official":
            assert torch.equal(seg.train()(feats, boxes)[0, 0], out[form])  # no input dropout
    assert torch.allclose(out["official"], torch.tensor([-0.49985, 0.99975]), atol=1e-7)
    assert torch.allclose(out["paper"], torch.tensor([1.0, -1.0]), atol=1e-4)


def test_official_text_input_is_the_gru_output_plus_a_fixed_position_row_halved():
    # The Bi-GRU with every weight and bias 0 outputs 0 (update gate 0.5, candidate tanh(0) = 0, h0 = 0), so
    # each word's input is (0 + 1e-5 * row) / 2; with row (0.08, -0.06): (4e-7, -3e-7), at every position.
    seg = TextSegments(4, 3, 2, "relu", 0.5, gru=True, form="official")
    with torch.no_grad():
        for p in seg.gru.parameters():
            p.zero_()
        seg.position_row.copy_(torch.tensor([0.08, -0.06]))
    ids, lengths = torch.tensor([[2, 3, 1]]), torch.tensor([3])
    x = seg.train()(ids, lengths)[0]
    assert torch.allclose(x, torch.tensor([4e-7, -3e-7]).expand(3, 2), rtol=0, atol=1e-12)
    # No projection after the GRU: the trainable parameters are the word table and the GRU only; the row is a
    # saved buffer, never trained.
    assert not hasattr(seg, "psi1") and not hasattr(seg, "psi2")
    assert {n.split(".")[0] for n, _ in seg.named_parameters()} == {"words", "gru"}
    assert "position_row" in seg.state_dict() and not seg.position_row.requires_grad
    # With trained GRU weights the input is the GRU's output plus the same row, halved.
    seg = TextSegments(4, 3, 2, "relu", 0.0, gru=True, form="official").eval()
    assert float(seg.position_row.abs().max()) <= 0.1  # drawn U(-0.1, 0.1) as the official table
    expected = (seg._contents(ids, lengths) + 1e-5 * seg.position_row) / 2
    assert torch.allclose(seg(ids, lengths), expected, atol=1e-7)
    # Without the GRU (no official form) psi1 brings the word vectors into d, then the same sum.
    seg = TextSegments(4, 3, 2, "relu", 0.0, gru=False, form="official").eval()
    expected = (seg.psi1(seg.words(ids)) + 1e-5 * seg.position_row) / 2
    assert torch.allclose(seg(ids, lengths), expected, atol=1e-7) and not hasattr(seg, "psi2")


def test_official_layer_norm_uses_the_unbiased_std_and_adds_eps_to_it():
    # x = (1, 2, 3): mean 2, unbiased std sqrt((1 + 0 + 1) / 2) = 1 -> (-1, 0, 1) / (1 + 1e-6).
    # torch's LayerNorm: biased variance 2/3 -> (-1, 0, 1) / sqrt(2/3 + 1e-6) = (-1.2247, 0, 1.2247).
    x = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    norm = OfficialLayerNorm(3, eps=1e-6).double()
    assert torch.allclose(norm(x), torch.tensor([[-1.0, 0.0, 1.0]], dtype=torch.float64) / (1 + 1e-6), atol=1e-15)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([2.0, 1.0, 1.0]))
        norm.bias.copy_(torch.tensor([0.5, 0.5, 0.5]))
    assert torch.allclose(norm(x)[0, 0], torch.tensor(-2.0 / (1 + 1e-6) + 0.5, dtype=torch.float64), atol=1e-15)
    standard = nn.LayerNorm(3, eps=1e-6).double()(x)
    assert torch.allclose(standard[0, 2], torch.tensor(1.0 / (2 / 3 + 1e-6) ** 0.5, dtype=torch.float64))
    encoder = TransformerEncoder(4, 1, 2, 8, 0.0, layer_norm="official")
    assert all(isinstance(m, OfficialLayerNorm) for m in (encoder.layers[0].attn_norm, encoder.final_norm))


def test_recipes_choose_the_input_embedding_and_ablations_without_recipe_keep_the_paper_form(data):
    params = small_params()
    d = params["methods"]["ss"]["d_model"]
    official = build_method("ss", params, data.info, np.asarray(data.text.embeddings), dataset="synthetic")
    assert official.image_in.official and official.text_in.official
    assert isinstance(official.encoders[0].final_norm, OfficialLayerNorm)
    no_recipe = build_method("ss_wo_r", params, data.info, np.asarray(data.text.embeddings))
    assert not no_recipe.image_in.official and isinstance(no_recipe.image_in.norm, nn.LayerNorm)
    params["methods"]["ss"]["recipe"] = "paper"
    paper = build_method("ss", params, data.info, np.asarray(data.text.embeddings))
    assert isinstance(paper.text_in.norm, nn.LayerNorm) and isinstance(paper.encoders[0].final_norm, nn.LayerNorm)
    # The paper's text input has psi2 (Linear(d, d) with bias) and a LayerNorm (2d) that the official code
    # lacks; after a GRU also psi1 (another Linear(d, d)): 2 * (d * d + d) + 2d.
    count = lambda m: sum(p.numel() for p in m.text_in.parameters())  # noqa: E731
    assert count(paper) - count(official) == d * d + d + 2 * d
    params["methods"]["ss"]["text_gru"] = True
    gru_paper = build_method("ss", params, data.info)
    params["methods"]["ss"]["recipe"] = "official"
    assert count(gru_paper) - count(build_method("ss", params, data.info)) == 2 * (d * d + d) + 2 * d
    params["methods"]["ss_wo_r"]["input_embedding"] = "official"  # written: wins on a method without recipe
    assert build_method("ss_wo_r", params, data.info).image_in.official


def test_a_model_saved_before_the_official_embedding_changed_is_refused(data):
    method = build_method("ss", small_params(), data.info, dataset="synthetic")
    config = method.config()
    assert config["config_version"] == 2
    rebuild_method(config)  # the current version rebuilds
    for old in ({k: v for k, v in config.items() if k != "config_version"}, {**config, "config_version": 1}):
        with pytest.raises(ValueError, match="config version 1.*retrain"):
            rebuild_method(old)


# --- Adam betas (DSCMR official) ----------------------------------------------------------------------

def test_adam_betas_reach_the_optimiser_and_its_steps():
    # Adam with lr 1, gradients +1 then -1 on p = 0 (eps negligible):
    # step 1: m_hat = 1, v_hat = 1 -> p = -1.
    # step 2, betas (0.5, 0.999): m = 0.5*0.5 - 0.5 = -0.25, m_hat = -0.25 / 0.75 = -1/3;
    #   v = 0.999*0.001 + 0.001 = 0.001999, v_hat = 0.001999 / (1 - 0.999^2) = 1 -> p = -1 + 1/3.
    # Default betas (0.9, 0.999): m_hat = (0.09 - 0.1) / 0.19 -> p = -1 + 0.01/0.19.
    for betas, expected in (([0.5, 0.999], -2 / 3), ([0.9, 0.999], -1 + 0.01 / 0.19)):
        p = nn.Parameter(torch.zeros((), dtype=torch.float64))
        opt = make_optimizer([p], {"lr": 1.0, "weight_decay": 0.0, "adam_betas": betas})
        assert opt.param_groups[0]["betas"] == tuple(betas)
        for g in (1.0, -1.0):
            p.grad = torch.tensor(g, dtype=torch.float64)
            opt.step()
        assert p.item() == pytest.approx(expected, abs=1e-6)


def test_dscmr_official_betas_on_every_kind_batch_100_on_real_data_only():
    params = validate({"methods": {"dscmr": {}}})
    for kind in ("shapes", "coco", "coco2014", "mirflickr", None):
        assert recipe_train(params, "dscmr", kind)["adam_betas"] == [0.5, 0.999]
    assert recipe_train(params, "dscmr", "shapes")["batch_size"] == params["train"]["batch_size"]
    assert recipe_train(params, "dscmr", "coco")["batch_size"] == 100
    assert recipe_train(params, "dscmr", "nuswide")["batch_size"] == 100
    params["methods"]["dscmr"]["recipe"] = "paper"
    assert recipe_train(params, "dscmr", "coco")["adam_betas"] == [0.9, 0.999]
    params["methods"]["dscmr"]["recipe"] = "official"
    params["methods"]["dscmr"]["train"]["adam_betas"] = [0.8, 0.99]  # a written loop key wins
    assert recipe_train(params, "dscmr", "coco")["adam_betas"] == [0.8, 0.99]


# --- gradient clipping scope (SS official: text encoder only) -----------------------------------------

def test_text_only_clipping_leaves_the_image_gradients_unclipped(data):
    params = small_params()
    torch.manual_seed(0)
    method = build_method("ss", params, data.info, np.asarray(data.text.embeddings), dataset="synthetic")
    method.train()
    loss, _ = method.training_loss(data.pair_batch(np.arange(16)).to("cpu"))
    loss.backward()
    trainable = [p for p in method.parameters() if p.requires_grad]
    image_before = [p.grad.clone() for p in method.image_in.parameters() if p.grad is not None]
    text = clipped_parameters(method, trainable, "text")
    assert {id(p) for p in text} == {id(p) for p in method.text_in.parameters() if p.requires_grad}
    text_norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in text]))
    assert text_norm > 1e-3
    torch.nn.utils.clip_grad_norm_(text, 1e-3)
    assert torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in text])).item() == pytest.approx(1e-3, rel=1e-3)
    image_after = [p.grad for p in method.image_in.parameters() if p.grad is not None]
    assert image_before and all(torch.equal(a, b) for a, b in zip(image_before, image_after))
    assert clipped_parameters(method, trainable, "all") is trainable


def test_text_clip_methods_are_those_with_a_text_parameter_group(data):
    from pipeline.contract.method import RetrievalMethod
    from pipeline.training.registry import METHODS

    for name in METHODS:
        own = method_class(name).text_parameters is not RetrievalMethod.text_parameters
        assert own == (name in TEXT_CLIP_METHODS), name
    st = build_method("st", small_params(), data.info)
    assert {id(p) for p in st.text_parameters()} >= {id(p) for p in st.encoders[1].parameters()}
    assert not {id(p) for p in st.text_parameters()} & {id(p) for p in st.encoders[0].parameters()}


# --- model selection on the training loss (SS official) -----------------------------------------------

def test_train_loss_selection_keeps_the_epoch_of_the_lowest_mean_training_loss(data, tmp_path):
    params = small_params(epochs=4, lr=0.05)  # a large rate, so that the loss need not fall every epoch
    assert method_settings_select(params) == "train_loss"  # the official recipe of ss
    result = train_method("ss", params, data, tmp_path / "m", tmp_path / "h.json", dataset="synthetic",
                          progress=False, log=lambda _m: None)
    history = json.loads((tmp_path / "h.json").read_text())
    losses = [h["loss"] for h in history]
    assert result.best_epoch == int(np.argmin(losses)) + 1 and result.select_key == "train_loss"
    assert result.best_value == pytest.approx(-min(losses))
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["select_metric"] == "train_loss" and config["epoch"] == result.best_epoch
    assert "val_ndcg_ave" in history[0]  # validation is still scored and recorded


def method_settings_select(params: dict) -> str:
    return recipe_train(params, "ss", None)["select_metric"]


# --- validation on the first N images (SCAN official, COCO) --------------------------------------------

def test_val_limit_keeps_the_first_1000_images_and_their_captions():
    table, store, text = make_dataset(n_images=1300, n_val=1100, n_test=20, n_regions=4, dim=4)
    data = RetrievalData(table, store, text)
    every, first = data.split_items("val"), data.split_items("val", 1000)
    assert len(every.image_rows) == 1100 and np.array_equal(first.image_rows, every.image_rows[:1000])
    assert len(first.captions) == 2000 and set(data.caption_rows[first.captions]) == set(first.image_rows)


def test_scan_official_limits_validation_on_coco_kinds_only():
    params = validate({"methods": {"scan_i2t": {}}})
    assert recipe_train(params, "scan_i2t", "coco")["val_limit_images"] == 1000
    assert recipe_train(params, "scan_i2t", "coco2014")["val_limit_images"] == 1000
    for kind in ("shapes", "flickr30k"):
        assert recipe_train(params, "scan_i2t", kind)["val_limit_images"] == 0


def test_the_loop_validates_on_the_limited_images(data, tmp_path):
    params = small_params(epochs=1)
    params["methods"]["ss"]["train"].update(val_limit_images=5, select_metric="ndcg_ave")
    train_method("ss", params, data, tmp_path / "m", tmp_path / "h.json", dataset="synthetic",
                 progress=False, log=lambda _m: None)
    history = json.loads((tmp_path / "h.json").read_text())
    assert history[0]["val_n_images"] == 5 and history[0]["val_n_texts"] == 10  # of the 20 val images


# --- recipe values and params checks -------------------------------------------------------------------

def test_ss_official_recipe_sets_the_loop_behaviours_on_every_kind():
    params = validate({"methods": {"ss": {}, "ss_wo_c": {}}})
    for kind in ("shapes", "coco", None):
        loop = recipe_train(params, "ss", kind)
        assert loop["grad_clip_scope"] == "text" and loop["select_metric"] == "train_loss"
        assert resolve_settings(params, "ss", kind)["input_embedding"] == "official"
    assert recipe_train(params, "ss", "shapes")["epochs"] == params["train"]["epochs"]  # sizes untouched
    assert recipe_train(params, "ss_wo_c", "shapes")["grad_clip_scope"] == "all"  # no recipe
    assert resolve_settings(params, "ss_wo_c", "shapes")["input_embedding"] is None  # the model reads paper
    params["methods"]["ss"]["recipe"] = "paper"
    assert recipe_train(params, "ss", "shapes")["select_metric"] == "auto"


@pytest.mark.parametrize("raw, key", [
    ({"train": {"adam_betas": [0.5]}}, "train.adam_betas"),
    ({"train": {"adam_betas": [1.0, 0.999]}}, "train.adam_betas"),
    ({"methods": {"dscmr": {"train": {"adam_betas": [0.5, -0.1]}}}}, "methods.dscmr.train.adam_betas"),
    ({"train": {"grad_clip_scope": "image"}}, "train.grad_clip_scope"),
    ({"methods": {"scan_i2t": {"train": {"grad_clip_scope": "text"}}}}, "methods.scan_i2t.train.grad_clip_scope"),
    ({"methods": {"dscmr": {}}, "train": {"grad_clip_scope": "text"}}, "train.grad_clip_scope"),
    ({"train": {"val_limit_images": -1}}, "train.val_limit_images"),
    ({"methods": {"ss": {"input_embedding": "bert"}}}, "methods.ss.input_embedding"),
    ({"methods": {"ss_wo_r": {"input_embedding": "bert"}}}, "methods.ss_wo_r.input_embedding"),
    ({"methods": {"scan_t2i": {"input_embedding": "official"}}}, "methods.scan_t2i.input_embedding"),
])
def test_bad_loop_and_embedding_values_are_errors_at_load_naming_the_key(raw, key):
    with pytest.raises(ParamError, match=key.replace(".", r"\.")):
        validate(raw)


def test_text_scope_is_accepted_for_the_semantic_sharing_family():
    params = validate({"methods": {name: {"train": {"grad_clip_scope": "text"}}
                                   for name in METHOD_SCHEMAS if name in TEXT_CLIP_METHODS}})
    assert all(recipe_train(params, name, None)["grad_clip_scope"] == "text" for name in TEXT_CLIP_METHODS)
