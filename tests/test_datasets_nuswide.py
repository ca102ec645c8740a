"""NUS-WIDE: annotation archives from a local server, images from the user's folder, top-k rule."""
import copy
import json
import shutil

import pytest

from datasets_helpers import download_params, nuswide_sources, publish, serving, write_registry
from pipeline.data import splits
from pipeline.data.download import download_dataset
from pipeline.data.nuswide import NuswideError, binary_matrix, image_relpath
from pipeline.data.prepare import prepare_dataset
from pipeline.data.table import label_names, read_table
from pipeline.params import NUSWIDE_SCHEMA, ParamError

PREP = {"images_without_labels": "keep", "max_captions": 5}


@pytest.fixture(scope="module")
def nus(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nus")
    sources, facts = nuswide_sources()
    images_root = tmp / "my_nuswide_images"
    for rel, data in facts["images"].items():
        (images_root / rel).parent.mkdir(parents=True, exist_ok=True)
        (images_root / rel).write_bytes(data)
    with serving() as server:
        registry = write_registry(tmp / "registry.yaml", sources)
        dl = download_params(tmp, registry, publish(server, sources))
        download_dataset("nus", nus_params(tmp, images_root), tmp / "data", dl)
    return tmp, images_root, facts


def nus_params(tmp, images_root, **kw):
    p = copy.deepcopy(NUSWIDE_SCHEMA)
    p.update(images_root=str(images_root), top_concepts=3, expected_pairs=0, n_val=3, n_test=2,
             split_file=str(tmp / "splits" / "nuswide.json"))
    p.update(kw)
    return p


def eligible_rows(facts):
    lab = facts["labels"]
    return [i for i in range(facts["n"]) if lab["sky"][i] or lab["clouds"][i] or lab["person"][i]]


def test_top_concepts_rule_and_table(nus, tmp_path):
    tmp, images_root, facts = nus
    expected = eligible_rows(facts)
    params = nus_params(tmp_path, images_root, expected_pairs=len(expected))
    stats = prepare_dataset("nus", params, PREP, tmp / "data")
    table = read_table(tmp / "data" / "nus" / "table.parquet")
    # sky 15 > clouds 10 > person 6 = water 6 (tie: concept-list order) > beach > animal; kept in list order.
    assert label_names(table) == ["clouds", "person", "sky"]
    assert stats["source"]["concept_counts"] == {"clouds": 10, "person": 6, "sky": 15}
    rows = {r["image_id"]: r for r in table.to_pylist()}
    assert sorted(rows) == expected and stats["source"]["eligible_pairs"] == len(expected)
    for i, r in rows.items():
        want = [k for k, c in enumerate(["clouds", "person", "sky"]) if facts["labels"][c][i]]
        assert r["labels"] == want
        tags = " ".join(t for t, v in zip(facts["tag_names"], facts["tags"][i]) if v)
        assert r["captions"] == ([tags] if tags else [])
        assert r["file_path"] == str(images_root / facts["rel"][i].replace("\\", "/"))
        assert (r["width"], r["height"]) == (12 + i % 4, 9)
    assert stats["images"] == {"train": len(expected) - 5, "val": 3, "test": 2}
    frozen = json.loads((tmp_path / "splits" / "nuswide.json").read_text())
    assert frozen["splits"] == splits.seeded_split(expected, 3, 2, 0)
    assert frozen["info"]["top_concepts"] == ["clouds", "person", "sky"]


def test_missing_user_images(nus, tmp_path):
    tmp, images_root, facts = nus
    partial = tmp_path / "images"
    shutil.copytree(images_root, partial)
    gone = eligible_rows(facts)[4]
    (partial / facts["rel"][gone].replace("\\", "/")).unlink()
    params = nus_params(tmp_path, partial)
    stats = prepare_dataset("nus", params, PREP, tmp / "data")
    ids = {r["image_id"] for r in read_table(tmp / "data" / "nus" / "table.parquet").to_pylist()}
    assert gone not in ids and stats["source"]["missing_images"] == 1
    # The split still covers the image: dropping it did not reshuffle anyone else.
    frozen = json.loads((tmp_path / "splits" / "nuswide.json").read_text())
    assert gone in sum(frozen["splits"].values(), [])
    with pytest.raises(FileNotFoundError, match=f"image of Imagelist.txt row {gone} not found"):
        prepare_dataset("nus", dict(params, missing_images="error"), PREP, tmp / "data")


def test_require_tags_and_expected_pairs(nus, tmp_path):
    tmp, images_root, facts = nus
    with_tags = [i for i in eligible_rows(facts) if any(facts["tags"][i])]
    stats = prepare_dataset("nus", nus_params(tmp_path, images_root, require_tags=True), PREP, tmp / "data")
    assert stats["source"]["eligible_pairs"] == len(with_tags) < len(eligible_rows(facts))
    with pytest.raises(NuswideError, match=f"keeps {len(eligible_rows(facts))} pairs, data.nus.expected_pairs says 195834"):
        prepare_dataset("nus", nus_params(tmp_path, images_root, expected_pairs=195834), PREP, tmp / "data")
    with pytest.raises(ParamError, match="images_root is empty"):
        prepare_dataset("nus", nus_params(tmp_path, ""), PREP, tmp / "data")
    with pytest.raises(ParamError, match="top_concepts must be in 1..6"):
        prepare_dataset("nus", nus_params(tmp_path, images_root, top_concepts=81), PREP, tmp / "data")


def test_binary_matrix_parsing(tmp_path):
    path = tmp_path / "m.txt"
    path.write_text("0\t1\t1\t\r\n1 0 0\n")
    assert binary_matrix(path, 2, 3).tolist() == [[False, True, True], [True, False, False]]
    path.write_text("0 1 1\n1 -1 0\n")
    with pytest.raises(NuswideError, match="line 2 has the character '-'"):
        binary_matrix(path, 2, 3)
    path.write_text("0 1 1\n1 0\n")
    with pytest.raises(NuswideError, match="5 values, expected 2 rows x 3"):
        binary_matrix(path, 2, 3)


def test_bad_annotation_files(nus, tmp_path):
    tmp, images_root, _ = nus
    root = json.loads((tmp / "data" / "nus" / "raw" / "manifest.json").read_text())["sources"]["nuswide"]["extracted"]
    copy_root = tmp_path / "ann"
    shutil.copytree(root, copy_root)
    sky = (copy_root / "Groundtruth" / "AllLabels" / "Labels_sky.txt").read_bytes()
    (copy_root / "Groundtruth" / "AllLabels" / "Labels_sky.txt").write_text("1\n0\n")
    with pytest.raises(NuswideError, match="Labels_sky.txt: 2 values, expected 30 rows"):
        prepare_dataset("n", nus_params(tmp_path, images_root, root=str(copy_root)), PREP, tmp_path / "out")
    (copy_root / "Groundtruth" / "AllLabels" / "Labels_sky.txt").unlink()
    with pytest.raises(NuswideError, match="ground-truth file of concept 'sky' not found"):
        prepare_dataset("n", nus_params(tmp_path, images_root, root=str(copy_root)), PREP, tmp_path / "out")
    (copy_root / "Groundtruth" / "AllLabels" / "Labels_sky.txt").write_bytes(sky)
    shutil.rmtree(copy_root / "NUS_WID_Tags")
    with pytest.raises(FileNotFoundError, match="no file TagList1k.txt"):
        prepare_dataset("n", nus_params(tmp_path, images_root, root=str(copy_root)), PREP, tmp_path / "out")


def test_image_list_paths():
    assert image_relpath("actor\\0001_2124494179.jpg") == "actor/0001_2124494179.jpg"
    assert image_relpath("C:\\ImageData\\Flickr\\actor\\0002_174174086.jpg") == "actor/0002_174174086.jpg"
