"""The training loop: learning, resume after a crash, checkpoints, bad input."""
import json

import numpy as np
import pytest
import torch

from pipeline.training.checkpoint import CheckpointError, load_model, load_state
from pipeline.training.data import DataInputError, RetrievalData
from pipeline.training.loop import TrainingDiverged, train_method
from pipeline.training.registry import build_method
from pipeline.training.scoring import score_split, split_metrics
from retrieval_fixtures import FakeFeatureStore, FakeTextData, make_dataset, small_params

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    table, store, text = make_dataset()
    return RetrievalData(table, store, text, cache_splits=("train", "val"))


def val_ndcg(method, data, params):
    scores = score_split(method, data, "val", metrics_params=params["metrics"], dataset="synthetic",
                         batch_size=64, device=torch.device("cpu"))
    return split_metrics(scores, data, metrics_params=params["metrics"], dataset="synthetic")["ndcg_ave"]


def quiet(_msg):
    pass


def test_a_tiny_run_learns_beyond_an_untrained_model(data, tmp_path):
    params = small_params(epochs=6)
    params["methods"]["ss"]["train"]["select_metric"] = "ndcg_ave"  # the official recipe selects on train_loss
    torch.manual_seed(0)
    untrained = build_method("ss", params, data.info, np.asarray(data.text.embeddings))
    baseline = val_ndcg(untrained, data, params)
    result = train_method("ss", params, data, tmp_path / "m", tmp_path / "h.json", dataset="synthetic",
                          progress=False, log=quiet)
    assert result.best_value > baseline + 8
    trained, config = load_model(tmp_path / "m", "ss", data.info)
    assert val_ndcg(trained, data, params) == pytest.approx(result.best_value, abs=1e-6)
    assert config["epoch"] == result.best_epoch and config["select_metric"] == "ndcg_ave"
    history = json.loads((tmp_path / "h.json").read_text())
    assert [h["epoch"] for h in history] == list(range(1, 7))
    assert {"loss", "label", "context_image", "context_text", "val_ndcg_ave", "val_rsum"} <= set(history[0])
    assert history[-1]["loss"] < history[0]["loss"]


def test_resume_after_a_crash_gives_the_same_weights(data, tmp_path):
    params = small_params(epochs=3)
    train_method("ss_con", params, data, tmp_path / "a", tmp_path / "a.json", dataset="synthetic", progress=False,
                 log=quiet)

    def crash(epoch, step):
        if epoch == 1 and step == 2:
            raise KeyboardInterrupt("simulated kill")

    with pytest.raises(KeyboardInterrupt):
        train_method("ss_con", params, data, tmp_path / "b", tmp_path / "b.json", dataset="synthetic",
                     progress=False, step_hook=crash, log=quiet)
    assert load_state(tmp_path / "b" / "last.pt")["epoch"] == 1
    result = train_method("ss_con", params, data, tmp_path / "b", tmp_path / "b.json", dataset="synthetic",
                          progress=False, log=quiet)
    assert result.resumed_at == 1 and result.epochs_done == 3
    a, b = load_state(tmp_path / "a" / "last.pt"), load_state(tmp_path / "b" / "last.pt")
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert json.loads((tmp_path / "a.json").read_text())[-1]["loss"] == json.loads((tmp_path / "b.json").read_text())[-1]["loss"]

    # a finished run is not redone, and more epochs continue it
    assert train_method("ss_con", params, data, tmp_path / "b", tmp_path / "b.json", dataset="synthetic",
                        progress=False, log=quiet).resumed_at == 3
    more = small_params(epochs=4)
    assert train_method("ss_con", more, data, tmp_path / "b", tmp_path / "b.json", dataset="synthetic",
                        progress=False, log=quiet).epochs_done == 4


def test_a_state_from_other_parameters_is_not_resumed(data, tmp_path):
    train_method("ss_wo_c", small_params(epochs=1), data, tmp_path / "m", tmp_path / "h.json", dataset="synthetic",
                 progress=False, log=quiet)
    other = small_params(epochs=1, lr=1e-3)
    messages = []
    result = train_method("ss_wo_c", other, data, tmp_path / "m", tmp_path / "h.json", dataset="synthetic",
                          progress=False, log=messages.append)
    assert result.resumed_at == 0
    assert any("ignoring" in m for m in messages)


def test_checkpoint_round_trip_and_mismatches(data, tmp_path):
    params = small_params(epochs=1)
    train_method("ss_wo_t", params, data, tmp_path / "m", tmp_path / "h.json", dataset="synthetic",
                 progress=False, log=quiet)
    model, _ = load_model(tmp_path / "m", "ss_wo_t", data.info)
    state = torch.load(tmp_path / "m" / "model.pt")
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    with pytest.raises(CheckpointError, match="checkpoint of method 'ss_wo_t', expected 'ss'"):
        load_model(tmp_path / "m", "ss", data.info)
    other = type(data.info)(**{**data.info.to_json(), "feature_dim": 99})
    with pytest.raises(CheckpointError, match="feature_dim: 16 != 99"):
        load_model(tmp_path / "m", "ss_wo_t", other)
    with pytest.raises(FileNotFoundError, match="run `xmr train <dataset> ss`"):
        load_model(tmp_path / "nothing", "ss", data.info)
    # weights of another shape under a matching config
    wrong = {k: v for k, v in state.items()}
    wrong["classifiers.0.weight"] = torch.zeros(3, 3)
    torch.save(wrong, tmp_path / "m" / "model.pt")
    with pytest.raises(CheckpointError, match="'classifiers.0.weight' has shape"):
        load_model(tmp_path / "m", "ss_wo_t", data.info)


def test_nan_loss_stops_with_a_clear_error(tmp_path):
    table, store, text = make_dataset()
    store.features[:] = np.nan
    data = RetrievalData(table, store, text, cache_splits=("train",))
    with pytest.raises(TrainingDiverged, match="loss became nan.*train.lr"):
        train_method("ss", small_params(epochs=1), data, tmp_path / "m", tmp_path / "h.json", dataset="synthetic",
                     progress=False, log=quiet)


def test_inputs_that_do_not_fit_together_are_named():
    table, store, text = make_dataset()
    short = FakeFeatureStore(store.features[:-1], store.positions[:-1], store.classes[:-1], store.num_classes)
    with pytest.raises(DataInputError, match="features.zarr: 119 rows but t.parquet has 120 images"):
        RetrievalData(table, short, text, names={"features": "features.zarr", "table": "t.parquet"})
    bad_text = FakeTextData(text.vocab, text.embeddings, np.append(text.caption_rows[:-1], 500), text.ids)
    with pytest.raises(DataInputError, match="captions refer to image rows up to 500"):
        RetrievalData(table, store, bad_text)
    bad_classes = FakeFeatureStore(store.features, store.positions, store.classes + 50, store.num_classes)
    with pytest.raises(DataInputError, match="RoI class .* outside the detector's 8 classes"):
        RetrievalData(table, bad_classes, text, cache_splits=("train",))


def test_feature_reads_without_cache_match_the_cache():
    table, store, text = make_dataset()
    cached = RetrievalData(table, store, text, cache_splits=("train",))
    uncached = RetrievalData(table, store, text, cache_gb=0.0, cache_splits=("train",))
    rows = np.array([5, 3, 5, 0])
    a, b = cached.image_batch(rows), uncached.image_batch(rows)
    assert torch.equal(a.features, b.features) and torch.equal(a.classes, b.classes)
    pair = cached.pair_batch(np.array([0, 1, 7]))
    assert pair.images.rows.tolist() == text.caption_rows[[0, 1, 7]].tolist()
    assert torch.equal(pair.images.labels, pair.texts.labels)


def test_image_features_stay_as_stored_until_moved_to_the_device():
    table, store, text = make_dataset()
    data = RetrievalData(table, store, text, cache_splits=("train",))
    rows = np.array([4, 0, 2])
    host = data.image_batch(rows)
    assert host.features.dtype == torch.float16  # the store's dtype: half the bytes to move
    moved = host.to("cpu")
    assert moved.features.dtype == torch.float32
    assert torch.equal(moved.features, torch.from_numpy(store.read(rows)["features"]))  # the store's float32 read
    assert data.pair_batch(np.array([0, 1])).to("cpu").images.features.dtype == torch.float32


def test_images_without_features_are_left_out_of_every_split():
    table, store, text = make_dataset()
    store.valid = np.ones(len(store), dtype=bool)
    store.valid[[0, 100]] = False  # one train image, one test image
    data = RetrievalData(table, store, text, cache_splits=("train", "test"))
    train, test = data.split_items("train"), data.split_items("test")
    assert 0 not in train.image_rows and len(train.image_rows) == 79
    assert 100 not in test.image_rows and not np.isin(data.caption_rows[test.captions], [100]).any()
    assert len(train.captions) == 2 * 79


def test_images_without_captions_are_left_out_of_scoring(one_thread):
    # A NUS-WIDE pair without tags (require_tags: false) has no text: it used to stop every validation.
    table, store, text = make_dataset()
    keep = ~np.isin(text.caption_rows, [3, 101])  # one train image, one test image lose their captions
    text = FakeTextData(text.vocab, text.embeddings, text.caption_rows[keep], [i for i, k in zip(text.ids, keep) if k])
    data = RetrievalData(table, store, text)
    test = data.split_items("test")
    assert 101 not in test.image_rows and len(test.image_rows) == 19 and len(test.captions) == 2 * 19
    assert data.without_captions("test") == 1 and data.without_captions("train") == 1
    assert data.without_captions("val") == 0 and len(data.split_items("val").image_rows) == 20
    params = small_params("ss", epochs=1)
    method = build_method("ss", params, data.info, word_vectors=np.asarray(text.embeddings)).eval()
    scores = score_split(method, data, "test", metrics_params=params["metrics"], dataset="synthetic",
                         batch_size=64, device=torch.device("cpu"))
    metrics = split_metrics(scores, data, metrics_params=params["metrics"], dataset="synthetic")
    assert metrics["n_images"] == 19 and np.isfinite(metrics["r1_i2t"]) and np.isfinite(metrics["ndcg_ave"])


def test_early_stopping_after_patience_epochs_without_improvement(data, tmp_path):
    # n_images never improves after the first epoch: with patience 2 the run stops after epoch 3
    params = small_params(epochs=6, patience=2, select_metric="n_images")
    result = train_method("ss_wo_r", params, data, tmp_path / "m", tmp_path / "h.json", dataset="synthetic",
                          progress=False, log=quiet)
    assert result.stopped_early and result.epochs_done == 3 and result.best_epoch == 1
    with pytest.raises(ValueError, match="'train.select_metric' is 'nope'.*available: .*ndcg_ave"):
        train_method("ss_wo_r", small_params(epochs=1, select_metric="nope"), data, tmp_path / "x",
                     tmp_path / "x.json", dataset="synthetic", progress=False, log=quiet)


def test_a_growing_loss_is_divergence():
    from pipeline.training.loop import _check_epoch

    settings = {"diverge_ratio": 20.0, "lr": 0.1}
    _check_epoch(19.0, {"reference_loss": 1.0}, settings, "ss", 4)
    with pytest.raises(TrainingDiverged, match="diverged in epoch 5 .*train.diverge_ratio = 20.0"):
        _check_epoch(25.0, {"reference_loss": 1.0}, settings, "ss", 4)


def test_selection_metric_and_data_info_defaults():
    from pipeline.contract.batches import DataInfo
    from pipeline.training.scoring import selection_key

    assert selection_key("auto", True) == "ndcg_ave" and selection_key("auto", False) == "rsum"
    assert selection_key("auto", True, "rsum") == "rsum"  # an instance-level method's preference
    assert selection_key("map_ave", True, "rsum") == "map_ave"  # an explicit choice wins
    old = {"feature_dim": 4, "num_regions": 2, "num_detector_classes": 3, "vocab_size": 9, "word_dim": 5,
           "num_labels": 2}  # a config written before num_images existed
    assert DataInfo.from_json(old).num_images == 0
    with pytest.raises(ValueError, match="lacks field 'word_dim'"):
        DataInfo.from_json({k: v for k, v in old.items() if k != "word_dim"})


def test_a_state_written_by_other_code_is_not_resumed(data, tmp_path, monkeypatch):
    import pipeline.training.loop as loop

    params = small_params(epochs=1)
    train_method("ss_wo_r", params, data, tmp_path / "m", tmp_path / "h.json", dataset="synthetic",
                 progress=False, log=quiet)
    assert train_method("ss_wo_r", params, data, tmp_path / "m", tmp_path / "h.json", dataset="synthetic",
                        progress=False, log=quiet).resumed_at == 1
    monkeypatch.setattr(loop, "code_fingerprint", lambda: "edited-code")
    assert train_method("ss_wo_r", params, data, tmp_path / "m", tmp_path / "h.json", dataset="synthetic",
                        progress=False, log=quiet).resumed_at == 0
