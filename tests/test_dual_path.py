"""Dual-path instance loss: text CNN, position shift, shared classifier, stages, a tiny run."""
from __future__ import annotations


import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.contract.batches import PAD_ID
from pipeline.models.dual_path import DualPath
from pipeline.models.text_cnn import TextCNN, fixed_length_ids
from pipeline.params import validate
from pipeline.training.registry import build_method, rebuild_method
from instance_data import concept_data, make_info, rsum_on, train_steps

SMALL = {"embed_dim": 32, "dropout": 0.1, "text_length": 12, "text_blocks": [1, 1, 1], "text_widths": [16, 32, 32],
         "stage1_epochs": 1}


pytestmark = pytest.mark.usefixtures("one_thread")


def _dual(data, **overrides) -> DualPath:
    params = validate({"methods": {"dual_path": {**SMALL, **overrides}}})
    torch.manual_seed(0)
    return build_method("dual_path", params, data.info, word_vectors=data.word_vectors)


def test_fixed_length_ids_clip_pad_and_shift():
    ids = torch.tensor([[5, 6, 7, 8, 9, 10], [11, 12, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]])
    lengths = torch.tensor([6, 2, 0])
    left = fixed_length_ids(ids, lengths, 4, shift=False)
    assert left.tolist() == [[5, 6, 7, 8], [11, 12, PAD_ID, PAD_ID], [PAD_ID] * 4]   # clipped / left-aligned
    offsets = set()
    for seed in range(40):
        out = fixed_length_ids(ids, lengths, 5, shift=True, generator=torch.Generator().manual_seed(seed))
        assert out[0].tolist() == [5, 6, 7, 8, 9]           # a full caption has no room to move
        row = out[1].tolist()
        start = row.index(11)
        assert row[start:start + 2] == [11, 12] and row.count(PAD_ID) == 3
        offsets.add(start)
        assert out[2].tolist() == [PAD_ID] * 5
    assert offsets == {0, 1, 2, 3}                           # every shift of a 2-word caption in 5 slots


def test_text_cnn_shapes_and_word2vec_init():
    vectors = torch.randn(30, 8)
    net = TextCNN(30, 8, blocks=[3, 4, 6, 3], widths=[16, 32, 64, 128], word_vectors=vectors)
    assert torch.equal(net.lookup.weight[1:], vectors[1:]) and not net.lookup.weight[PAD_ID].any()
    ids = torch.randint(0, 30, (5, 32))
    assert net(ids).shape == (5, 128)
    lengths = []
    hook = lambda m, i, o: lengths.append(o.shape[2])       # noqa: E731
    for block in net.blocks:
        block.register_forward_hook(hook)
    net(ids)
    assert lengths == [32] * 3 + [16] * 4 + [8] * 6 + [8] * 3   # 32 -> 16 -> 8, ResNet-50 depths
    assert net(torch.randint(0, 30, (5, 7))).shape == (5, 128)   # any length works
    with pytest.raises(ValueError, match="text_blocks"):
        TextCNN(30, 8, blocks=[1, 1], widths=[16])


def test_instance_loss_shares_one_classifier():
    data = concept_data(n_images=12, seed=1)
    method = _dual(data, stage1_epochs=0, dropout=0.0, position_shift=False)
    assert method.classifier.weight.shape == (12, 32) and method.classifier.bias is None
    batch = data.pair_batch(torch.tensor([0, 7, 12, 31, 44])).to("cpu")
    loss, parts = method.training_loss(batch)
    f_img, f_txt = method.encode_images(batch.images), method.encode_texts(batch.texts)
    w = method.classifier.weight
    # by hand: softmax over all groups with the same W_share for both modalities
    visual = -(F.log_softmax(f_img @ w.T, dim=1)[torch.arange(5), batch.images.rows]).mean()
    textual = -(F.log_softmax(f_txt @ w.T, dim=1)[torch.arange(5), batch.texts.rows]).mean()
    assert parts["instance_visual"].item() == pytest.approx(visual.item(), rel=1e-5)
    assert parts["instance_textual"].item() == pytest.approx(textual.item(), rel=1e-5)
    # stage II: ranking with weight 1 times the official ranking_scale 0.5 on top (sampled negatives are
    # random, so take it from parts)
    assert loss.item() == pytest.approx(visual.item() + textual.item() + 0.5 * parts["ranking"].item(), rel=1e-5)
    # both instance losses reach W_share
    method.zero_grad()
    parts_only = F.cross_entropy(method.classifier(f_img.detach()), batch.images.rows)
    parts_only.backward()
    g_img = method.classifier.weight.grad.clone()
    method.zero_grad()
    F.cross_entropy(method.classifier(f_txt.detach()), batch.texts.rows).backward()
    assert g_img.abs().sum() > 0 and method.classifier.weight.grad.abs().sum() > 0
    method.eval()
    assert torch.equal(method.encode_texts(batch.texts), method.encode_texts(batch.texts))   # no shift in eval


def test_stages_switch_weights_and_freezing():
    data = concept_data(n_images=12, seed=2)
    method = _dual(data, stage1_epochs=2, stage1_freeze="image_path")
    batch = data.pair_batch(torch.arange(0, 60, 5)).to("cpu")
    for epoch, stage in ((0, 1), (1, 1), (2, 2), (5, 2)):
        method.start_epoch(epoch)
        method.train()
        assert method.stage == stage
        method.zero_grad()
        loss, parts = method.training_loss(batch)
        loss.backward()
        image_grads = [p.grad for p in method.image_head.parameters()]
        if stage == 1:
            assert "ranking" not in parts and method.loss_weights()[0] == 0.0
            assert all(g is None for g in image_grads)          # image path frozen
            assert not method.image_head[1].training            # and its batch norm statistics too
            assert method.text_cnn.lookup.weight.grad is not None
        else:
            assert "ranking" in parts and method.loss_weights() == (1.0, 1.0, 1.0)
            assert all(g is not None for g in image_grads) and method.image_head[1].training
    # paper default: only pretrained weights are frozen, so on RoI features the head trains in stage I
    paper = _dual(data, stage1_epochs=2)
    paper.start_epoch(0)
    paper.train()
    loss, _ = paper.training_loss(batch)
    loss.backward()
    assert all(p.grad is not None for p in paper.image_head.parameters())


def test_resnet_backbone_is_frozen_in_stage_one(tmp_path):
    """End-to-end option with random ResNet-50 weights written to a file, on tiny images."""
    from PIL import Image

    from pipeline.data.table import write_table
    from pipeline.models.resnet_images import ResNet50Features

    torchvision = pytest.importorskip("torchvision")
    weights = tmp_path / "resnet50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), weights)
    files = []
    for i in range(4):
        path = tmp_path / f"{i}.png"
        Image.fromarray((np.random.default_rng(i).random((40, 50, 3)) * 255).astype(np.uint8)).save(path)
        files.append(str(path))
    table = tmp_path / "table.parquet"
    write_table({"image_id": list(range(4)), "file_path": files, "width": [50] * 4, "height": [40] * 4,
                 "captions": [["a b"]] * 4, "labels": [[]] * 4, "boxes": [[]] * 4, "box_labels": [[]] * 4,
                 "split": ["train"] * 4}, [], "tiny", table)
    data = concept_data(n_images=4, seed=3)
    method = _dual(data, image_backbone="resnet50", resnet_weights=str(weights), image_table=str(table),
                   image_size=32, stage1_epochs=1)
    assert isinstance(method.backbone, ResNet50Features)
    batch = data.pair_batch(torch.arange(0, 20, 5)).to("cpu")
    for epoch in (0, 1):
        method.start_epoch(epoch)
        method.train()
        method.zero_grad()
        loss, _ = method.training_loss(batch)
        loss.backward()
        conv_grad = method.backbone.net.conv1.weight.grad
        if epoch == 0:
            assert conv_grad is None and not method.backbone.training
            assert all(p.grad is not None for p in method.image_head.parameters())
        else:
            assert conv_grad is not None and method.backbone.training
    with pytest.raises(FileNotFoundError, match="resnet50"):
        ResNet50Features(tmp_path / "missing.pth")


def test_bad_settings_and_missing_group_count():
    data = concept_data(n_images=4)
    with pytest.raises(ValueError, match="methods.dual_path.text_widths"):
        _dual(data, text_widths=[8])
    with pytest.raises(ValueError, match="methods.dual_path.resnet_weights"):
        _dual(data, image_backbone="resnet50")
    with pytest.raises(ValueError, match="methods.dual_path.ranking_negatives"):
        _dual(data, ranking_negatives="semi")
    info = make_info(feature_dim=16, num_regions=6, num_detector_classes=1, vocab_size=17, word_dim=8, num_labels=0)
    params = validate({"methods": {"dual_path": SMALL}})
    with pytest.raises(ValueError, match="num_images"):
        build_method("dual_path", params, info)


def test_tiny_run_learns():
    data = concept_data(n_images=120, seed=0)
    train_rows, test_rows = np.arange(80), np.arange(80, 120)
    method = _dual(data, stage1_epochs=2)
    before = rsum_on(method, data, test_rows)
    losses = train_steps(method, data, train_rows, steps=150, lr=3e-3, steps_per_epoch=25)
    assert method.stage == 2
    after = rsum_on(method, data, test_rows)
    assert np.mean(losses[:10]) > np.mean(losses[40:50])
    assert after > before + 60, (before, after)


def test_rebuilt_from_config_scores_the_same():
    data = concept_data(n_images=20, seed=5)
    method = _dual(data)
    train_steps(method, data, np.arange(15), steps=3, steps_per_epoch=1)
    rebuilt = rebuild_method(method.config())
    rebuilt.load_state_dict(method.state_dict())
    assert rsum_on(rebuilt, data, np.arange(15, 20)) == pytest.approx(rsum_on(method, data, np.arange(15, 20)))


def train_tiny(name: str, tmp_path, n_images: int):
    """Two epochs of `name` through the training loop on synthetic data; returns (data, history)."""
    import json

    from retrieval_fixtures import make_dataset

    from pipeline.training.data import RetrievalData
    from pipeline.training.loop import train_method

    data = RetrievalData(*make_dataset(n_images=n_images, n_val=12, n_test=12), cache_splits=("train", "val"))
    params = validate({"train": {"batch_size": 16, "lr": 2e-3, "epochs": 2, "device": "cpu", "threads": 1,
                                 "select_metric": "rsum"}, "methods": {name: SMALL}})
    train_method(name, params, data, tmp_path / "m", tmp_path / "h.json", dataset="synthetic",
                 progress=False, log=lambda m: None)
    return data, json.loads((tmp_path / "h.json").read_text())


def test_trains_both_stages_through_the_training_loop(tmp_path):
    """Loop integration: stage I then stage II (the loop calls `start_epoch`), checkpoint reload."""
    from pipeline.training.checkpoint import load_model

    data, history = train_tiny("dual_path", tmp_path, n_images=60)
    assert history[0]["ranking"] is None and history[1]["ranking"] > 0  # stage I, then stage II
    assert set(history[0]) == set(history[1])  # one key set per file, as `dvc plots show` needs
    method, _ = load_model(tmp_path / "m", "dual_path", data.info)
    assert method.num_classes == 60


def test_stage1_method_never_enters_stage_ii_through_the_training_loop(tmp_path):
    """`dual_path_stage1` (papers/003's "Stage I" row) trains as many epochs as `dual_path` with the instance
    losses only: no ranking loss in any epoch of its history, while `dual_path` (above) adds it from epoch 2."""
    _, history = train_tiny("dual_path_stage1", tmp_path, n_images=40)
    assert len(history) == 2 and all(e.get("ranking") is None for e in history)  # no ranking part at all
    assert all(e["instance_visual"] > 0 and e["instance_textual"] > 0 for e in history)


def test_stage1_method_stays_in_stage_i_and_weights_no_ranking():
    data = concept_data(n_images=12, seed=2)
    params = validate({"methods": {"dual_path_stage1": {**SMALL, "stage1_epochs": 1}}})
    method = build_method("dual_path_stage1", params, data.info, word_vectors=data.word_vectors)
    method.start_epoch(7)
    assert method.stage == 1 and method.loss_weights()[0] == 0.0
    assert rebuild_method(method.config()).stage == 1    # the saved config rebuilds the stage-I class
