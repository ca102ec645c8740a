"""Semantic Sharing: ablation switches, shapes, masking, encoder and BERT key mapping."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.contract.batches import MASK_ID, DataInfo, ImageBatch, PairBatch, TextBatch
from pipeline.models.bert import BertCheckpointError, bert_to_encoder_state, load_bert_into
from pipeline.models.encoder import TransformerEncoder, sinusoidal_positions
from pipeline.models.segments import ImageSegments, TextSegments, random_segment_mask
from pipeline.models.semantic_sharing import VARIANTS, SemanticSharing
from pipeline.params import ParamError, validate
from pipeline.training.registry import METHODS, UnknownMethodError, build_method, check_method
from pipeline.training.schema import METHOD_SCHEMAS, USES_LAMBDA

pytestmark = pytest.mark.usefixtures("one_thread")

INFO = DataInfo(feature_dim=12, num_regions=6, num_detector_classes=5, vocab_size=20, word_dim=8, num_labels=4)


def tiny_params(**method_overrides):
    raw = {"methods": {}}
    for name in VARIANTS:
        schema = METHOD_SCHEMAS[name]
        entry = {"d_model": 16, "dropout": 0.0, "text_gru": name == "st"}
        if "layers" in schema:
            entry.update(layers=2, heads=4, d_ff=32)
        entry.update(method_overrides)
        raw["methods"][name] = {k: v for k, v in entry.items() if k in schema}
    return validate(raw)


def batch(b=4, length=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (b, INFO.num_labels), generator=g).float()
    img = ImageBatch(torch.arange(b), torch.randn(b, INFO.num_regions, INFO.feature_dim, generator=g),
                     torch.rand(b, INFO.num_regions, 5, generator=g),
                     torch.randint(0, INFO.num_detector_classes, (b, INFO.num_regions), generator=g), labels)
    lengths = torch.tensor([length, 3, 1, 0] + [length] * (b - 4))[:b]
    ids = torch.randint(3, INFO.vocab_size, (b, length), generator=g)
    ids[torch.arange(length) >= lengths.unsqueeze(1)] = 0
    return PairBatch(img, TextBatch(torch.arange(b), torch.arange(b), ids, lengths, labels))


EXPECTED_PARTS = {
    "ss": {"label", "context_image", "context_text"},
    "ss_con": {"label", "context_image", "context_text", "consistency"},
    "ss_wo_r": {"label"},
    "ss_wo_t": {"label", "context_image", "context_text"},
    "ss_wo_c": {"label"},
    "ss_wo_l": {"context_image", "context_text"},
    "st": {"label", "context_image", "context_text"},
    "imc": {"consistency"},
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_ablation_builds_trains_and_embeds_in_label_space(name):
    torch.manual_seed(0)
    model = build_method(name, tiny_params(), INFO)
    pb = batch()
    loss, parts = model.training_loss(pb)
    assert set(parts) == EXPECTED_PARTS[name]
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoders[0].parameters())
    model.eval()
    zi, zt = model.encode_images(pb.images), model.encode_texts(pb.texts)
    assert zi.shape == (4, INFO.num_labels) and zt.shape == (4, INFO.num_labels)
    assert torch.all(zi > 0) and torch.all(zt > 0)  # averaged unit sigmoid vectors
    assert torch.all(zi.norm(dim=1) <= 1 + 1e-5)
    assert model.similarity(zi, zt).shape == (4, 4)
    probs = model.classify_images(pb.images)
    if VARIANTS[name].label:
        assert probs.shape == (4, INFO.num_labels) and torch.all((probs > 0) & (probs < 1))
        assert model.classify_texts(pb.texts).shape == (4, INFO.num_labels)
    else:
        assert probs is None  # no trained classifier to score


def test_switches_follow_table1():
    ss = VARIANTS["ss"]
    assert (ss.regions, ss.encoder, ss.shared, ss.label, ss.context, ss.consistency) == (
        True, "transformer", True, True, True, None)
    assert not VARIANTS["ss_wo_r"].regions and VARIANTS["ss_wo_r"].encoder == "fc"
    assert VARIANTS["ss_wo_t"].encoder == "fc" and VARIANTS["ss_wo_t"].context
    assert not VARIANTS["ss_wo_c"].context and VARIANTS["ss_wo_c"].label
    assert not VARIANTS["ss_wo_l"].label and VARIANTS["ss_wo_l"].context
    assert not VARIANTS["st"].shared
    assert VARIANTS["imc"].consistency == "imc" and not VARIANTS["imc"].label
    assert VARIANTS["ss_con"].consistency == "triplet"


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_param_sections_hold_exactly_the_settings_a_variant_uses(name):
    sw, schema = VARIANTS[name], METHOD_SCHEMAS[name]
    assert ("layers" in schema) == (sw.encoder == "transformer")
    assert ("mask_prob" in schema) == sw.context
    assert (name in USES_LAMBDA) == sw.context
    assert ("con_weight" in schema) == (sw.consistency == "triplet")
    assert METHODS[name].builder.endswith("SemanticSharing")


def test_shared_and_separate_models():
    p = tiny_params()
    assert len(build_method("ss", p, INFO).encoders) == 1
    st = build_method("st", p, INFO)
    assert len(st.encoders) == 2 and len(st.classifiers) == 2
    # image and text go through different encoders in ST: changing the text encoder leaves images alone
    pb = batch()
    st.eval()
    before = st.encode_images(pb.images)
    with torch.no_grad():
        for prm in st.encoders[1].parameters():
            prm.add_(1.0)
    assert torch.equal(before, st.encode_images(pb.images))


def test_without_regions_each_item_is_one_segment():
    model = build_method("ss_wo_r", tiny_params(), INFO).eval()
    pb = batch()
    h, valid = model._image_hidden(pb.images)
    assert h.shape[:2] == (4, 1)
    h, valid = model._text_hidden(pb.texts)
    assert h.shape[:2] == (4, 1)


def test_padding_does_not_change_a_caption_embedding():
    model = build_method("ss", tiny_params(), INFO).eval()
    pb = batch()
    short = pb.texts
    longer = TextBatch(short.captions, short.rows, F.pad(short.ids, (0, 5)), short.lengths, short.labels)
    assert torch.allclose(model.encode_texts(short), model.encode_texts(longer), atol=1e-6)


def test_lambda_weights_the_context_loss():
    pb = batch()
    losses = {}
    for lam in (0.0, 2.0):
        p = tiny_params()
        p["lambda"] = lam
        torch.manual_seed(0)
        model = build_method("ss", p, INFO)
        torch.manual_seed(1)
        loss, parts = model.training_loss(pb)
        losses[lam] = (loss.item(), parts)
    _, parts = losses[2.0]
    assert losses[0.0][0] == pytest.approx(parts["label"].item(), rel=1e-5)
    # The official recipe's lambda_scale (0.005) multiplies lambda: 2.0 -> 0.01 (recipes.py).
    assert losses[2.0][0] == pytest.approx(
        parts["label"].item() + 0.01 * (parts["context_image"].item() + parts["context_text"].item()), rel=1e-5)
    assert build_method("ss_wo_c", tiny_params(), INFO).lam is None  # does not read lambda
    paper = tiny_params(recipe="paper")
    paper["lambda"] = 2.0
    assert build_method("ss", paper, INFO).lam == pytest.approx(2.0)  # paper: lambda as written (not COCO)


def test_masking_rate_and_validity():
    torch.manual_seed(0)
    valid = torch.rand(400, 300) < 0.7
    mask = random_segment_mask(valid, 0.15)
    assert not (mask & ~valid).any()
    rate = mask.sum().item() / valid.sum().item()
    assert abs(rate - 0.15) < 0.005  # ~84k valid segments: std of the rate ~0.0012


def test_masked_segments_are_replaced_by_the_learned_mask():
    torch.manual_seed(0)
    segs = ImageSegments(feature_dim=12, d_model=16, phi="relu", dropout=0.0)
    feats, pos = torch.randn(2, 6, 12), torch.rand(2, 6, 5)
    masked = torch.zeros(2, 6, dtype=torch.bool)
    masked[0, 2] = True
    out_a = segs(feats, pos, masked)
    feats_b = feats.clone()
    feats_b[0, 2] = 100.0  # the masked RoI's own features no longer matter
    assert torch.allclose(out_a, segs(feats_b, pos, masked))
    assert not torch.allclose(out_a[0, 2], segs(feats, pos)[0, 2])

    text = TextSegments(vocab_size=20, word_dim=8, d_model=16, phi="relu", dropout=0.0, gru=False)
    ids = torch.tensor([[5, 6, 7]])
    m = torch.tensor([[False, True, False]])
    with_mask_id = ids.clone()
    with_mask_id[0, 1] = MASK_ID
    assert torch.allclose(text(ids, torch.tensor([3]), m), text(with_mask_id, torch.tensor([3])))


def test_word_vectors_initialise_the_table_and_mask_gets_its_own_vector():
    vectors = torch.randn(20, 8)
    vectors[0] = 0
    vectors[MASK_ID] = 0
    text = TextSegments(20, 8, 16, "relu", 0.0, gru=False, word_vectors=vectors, finetune_words=False)
    assert torch.equal(text.words.weight[3:], vectors[3:])
    assert text.words.weight[MASK_ID].abs().sum() > 0
    assert not text.words.weight.requires_grad


def test_sinusoidal_positions():
    pe = sinusoidal_positions(4, 6)
    assert torch.allclose(pe[0], torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 1.0]))
    assert pe[3, 2].item() == pytest.approx(math.sin(3 / 10000 ** (2 / 6)), rel=1e-5)
    assert pe[3, 3].item() == pytest.approx(math.cos(3 / 10000 ** (2 / 6)), rel=1e-5)


def test_needs_labels_and_lambda():
    no_labels = DataInfo(**{**INFO.to_json(), "num_labels": 0})
    with pytest.raises(ValueError, match="needs a dataset with labels"):
        build_method("ss", tiny_params(), no_labels)
    with pytest.raises(ValueError, match="lambda"):
        SemanticSharing("ss", tiny_params()["methods"]["ss"], INFO, None)


def test_unknown_method_and_bad_params_are_named():
    with pytest.raises(UnknownMethodError, match=r"unknown method 'sss' \(known: .*imc, .*ss, ss_con"):
        check_method("sss")
    for raw, needle in [({"lambda": -0.1}, "'lambda' must be a finite number >= 0"),
                        ({"lambda": "x"}, "'lambda' must be a number"),
                        ({"methods": {"ss": {"heads": 7}}}, "'methods.ss.heads' must be a divisor"),
                        ({"methods": {"ss": {"mask_prob": 1.5}}}, "'methods.ss.mask_prob'"),
                        ({"methods": {"ss_wo_c": {"mask_prob": 0.2}}}, "unknown parameter 'methods.ss_wo_c.mask_prob'"),
                        ({"methods": {"sss": {}}}, "unknown parameter 'methods.sss'"),
                        ({"train": {"device": "tpu"}}, "'train.device'"),
                        ({"train": {"batch_size": 0}}, "'train.batch_size'")]:
        with pytest.raises(ParamError, match=needle):
            validate(raw)


# --- BERT initialisation ------------------------------------------------------------------------
def fake_bert_state(layers=3, hidden=32, inter=64, prefix="", old_norm_names=False):
    """A randomly initialised state dict in HF BertModel's layout (small sizes)."""
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g) * 0.1  # noqa: E731
    ln = ("gamma", "beta") if old_norm_names else ("weight", "bias")
    sd = {"embeddings.word_embeddings.weight": r(30, hidden), "embeddings.position_embeddings.weight": r(16, hidden),
          "embeddings.token_type_embeddings.weight": r(2, hidden),
          f"embeddings.LayerNorm.{ln[0]}": 1 + r(hidden), f"embeddings.LayerNorm.{ln[1]}": r(hidden),
          "pooler.dense.weight": r(hidden, hidden), "pooler.dense.bias": r(hidden)}
    for i in range(layers):
        p = f"encoder.layer.{i}."
        for name in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            sd[p + name + ".weight"], sd[p + name + ".bias"] = r(hidden, hidden), r(hidden)
        sd[p + "intermediate.dense.weight"], sd[p + "intermediate.dense.bias"] = r(inter, hidden), r(inter)
        sd[p + "output.dense.weight"], sd[p + "output.dense.bias"] = r(hidden, inter), r(hidden)
        for name in ("attention.output.LayerNorm", "output.LayerNorm"):
            sd[p + f"{name}.{ln[0]}"], sd[p + f"{name}.{ln[1]}"] = 1 + r(hidden), r(hidden)
    return {prefix + k: v for k, v in sd.items()}


def bert_reference(x, sd, layers, heads):
    """BERT's encoder computed directly from the HF-named tensors (post-norm, GELU)."""
    b, n, d = x.shape
    lin = lambda t, name: t @ sd[name + ".weight"].T + sd[name + ".bias"]  # noqa: E731
    ln = lambda t, name: F.layer_norm(t, (d,), sd[name + ".weight"], sd[name + ".bias"], eps=1e-6)  # noqa: E731
    for i in range(layers):
        p = f"encoder.layer.{i}."
        split = lambda t: t.view(b, n, heads, d // heads).transpose(1, 2)  # noqa: E731
        q, k, v = (split(lin(x, p + f"attention.self.{w}")) for w in ("query", "key", "value"))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // heads), dim=-1) @ v
        x = ln(x + lin(att.transpose(1, 2).reshape(b, n, d), p + "attention.output.dense"), p + "attention.output.LayerNorm")
        x = ln(x + lin(F.gelu(lin(x, p + "intermediate.dense")), p + "output.dense"), p + "output.LayerNorm")
    return x


@pytest.mark.parametrize("prefix, old", [("", False), ("bert.", True)])
def test_bert_mapping_reproduces_bert_forward(tmp_path, prefix, old):
    sd = fake_bert_state(prefix=prefix, old_norm_names=old)
    path = tmp_path / "pytorch_model.bin"
    torch.save(sd, path)
    enc = TransformerEncoder(32, layers=2, heads=4, d_ff=64, dropout=0.0, activation="gelu", norm_first=False)
    load_bert_into(enc, path)
    enc.eval()
    x = torch.randn(2, 5, 32)
    plain = fake_bert_state()
    assert torch.allclose(enc(x), F.relu(bert_reference(x, plain, 2, 4)), atol=1e-5)
    assert torch.equal(enc.layers[1].ff_in.weight, plain["encoder.layer.1.intermediate.dense.weight"])


def test_bert_mapping_errors(tmp_path):
    with pytest.raises(BertCheckpointError, match="encoder.layer.3.attention.self.query.weight' missing"):
        bert_to_encoder_state(fake_bert_state(layers=3), layers=4)
    path = tmp_path / "bert.pt"
    torch.save(fake_bert_state(), path)
    with pytest.raises(BertCheckpointError, match="norm_first: false"):
        load_bert_into(TransformerEncoder(32, 2, 4, 64, 0.0, "gelu", norm_first=True), path)
    with pytest.raises(BertCheckpointError, match="activation: gelu"):
        load_bert_into(TransformerEncoder(32, 2, 4, 64, 0.0, "relu", norm_first=False), path)
    with pytest.raises(BertCheckpointError, match="d_model 768, d_ff 3072"):
        load_bert_into(TransformerEncoder(32, 2, 4, 128, 0.0, "gelu", norm_first=False), path)
    with pytest.raises(FileNotFoundError, match="BERT checkpoint not found"):
        load_bert_into(TransformerEncoder(32, 2, 4, 64, 0.0, "gelu", norm_first=False), tmp_path / "none.bin")


def test_semantic_sharing_initialises_from_a_bert_checkpoint(tmp_path):
    path = tmp_path / "bert.bin"
    sd = fake_bert_state()
    torch.save(sd, path)
    p = tiny_params()
    p["methods"]["ss"].update(d_model=32, d_ff=64, heads=4, norm_first=False, activation="gelu",
                              bert_checkpoint=str(path))
    model = build_method("ss", p, INFO)
    assert torch.equal(model.encoders[0].layers[0].query.weight, sd["encoder.layer.0.attention.self.query.weight"])


def test_the_official_mask_selection_rule_the_bench_reproduces():
    # bench/ss_mask_selection.py measures the official context loss's selection (a bug xmr does not copy):
    # batch 10, sequence length 5, items 0-4 with 2 sampled segments each, items 5-9 with 1: the official
    # loop walks items below min(10, 5) = 5 only and keeps 10 of the 15 (issue 26's example).
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "ss_mask_selection.py"
    spec = importlib.util.spec_from_file_location("ss_mask_selection", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    masked = np.zeros((10, 5), dtype=bool)
    masked[:5, :2] = True
    masked[5:, 4] = True
    assert masked.sum() == 15 and bench.official_kept(masked, 5) == 10
    assert bench.official_kept(masked, 12) == 15  # L >= batch: every item is walked
