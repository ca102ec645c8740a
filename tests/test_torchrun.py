"""Scale-out on CPU: `torchrun` with 2 processes (gloo) runs `xmr extract`, each rank writing its own
chunks of one Zarr store (equal to a single-process extraction), and `xmr train` data-parallel."""
import json
import shutil

import numpy as np
import pytest

from detection_helpers import params, shapes_table, tiny_detector
from pipeline.detection.store import ARRAYS, FeatureStore
from tiny_project import BIN, run

N, CHUNK = 10, 2  # 5 chunks: rank 0 writes 0, 2, 4 (6 images), rank 1 writes 1, 3 (4 images)
TORCHRUN = [BIN / "torchrun", "--standalone", "--nproc-per-node", "2", "--no-python", "xmr"]


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    """A 10-image dataset `mini` with a random detector, extracted by two torchrun ranks."""
    root = tmp_path_factory.mktemp("torchrun")
    shapes_table(root, N, dataset="mini")
    tiny_detector(root / "models", dataset="mini")
    cfg = params("mini", chunk_size=CHUNK, batch_size=2, threads=1)
    (root / "params.yaml").write_text(json.dumps({
        "datasets": ["mini"], "data": {"mini": {"kind": "shapes"}},
        "extract": {k: cfg["extract"][k] for k in ("workers", "chunk_size", "batch_size", "device", "threads")},
        "text": {"w2v_epochs": 1, "embedding_dim": 16},
        "train": {"epochs": 1, "batch_size": 8, "threads": 1},
        "methods": {"ss": {"d_model": 16, "layers": 1, "heads": 2, "d_ff": 32}}}))
    out = run([*TORCHRUN, "extract", "mini", "--no-progress"], root).stdout
    return root, out


def test_two_ranks_fill_one_store_like_one_process(mini):
    root, out = mini
    assert "mini: rank 1 wrote 4 images; store not finished yet" in out, out
    assert "10/10 images" in out and "6 extracted this run" in out, out  # rank 0 finalises
    single = root / "single"
    (single / "mini").mkdir(parents=True)
    shutil.copy(root / "data" / "mini" / "table.parquet", single / "mini" / "table.parquet")
    run([BIN / "xmr", "extract", "mini", "--no-progress", "--data-dir", str(single)], root)

    distributed, alone = (FeatureStore(d / "mini" / "features.zarr") for d in (root / "data", single))
    assert len(distributed) == N and distributed.attrs["complete"]
    for name in ARRAYS:
        assert np.array_equal(distributed.arrays[name][:], alone.arrays[name][:]), name
    stats = json.loads((root / "data" / "mini" / "extract_stats.json").read_text())
    assert stats["images"] == stats["valid_images"] == N  # chunk stats of both ranks gathered


def test_two_ranks_train_one_model(mini):
    root, _ = mini
    run([BIN / "xmr", "tokenize", "mini"], root)
    out = run([*TORCHRUN, "train", "mini", "ss", "--no-progress"], root).stdout
    assert out.count("mini/ss: 1 epochs") == 2, out  # both ranks finished the epoch
    assert (root / "models" / "mini" / "ss" / "model.pt").is_file()
    history = json.loads((root / "reports" / "training" / "mini" / "ss.json").read_text())
    assert len(history) == 1 and history[0]["epoch"] == 1, history
