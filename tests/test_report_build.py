"""The report stage on fabricated metrics, histories, rankings and a real `dvc exp show --json` sample."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from pipeline.data.table import write_table
from pipeline.metrics import top_retrievals, write_rankings
from pipeline.reporting.collect import ReportInputError, collect_metrics, column_views
from pipeline.reporting.report import build_report
from pipeline.reporting.sweep import merge_points, read_states, split_sweeps, sweep_points
from stages.cli import app

SAMPLE = Path(__file__).parent / "data" / "dvc_exp_show_sample.json"


def write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def label_metrics(i2t, t2i, **extra):
    return {"ndcg_i2t": i2t, "ndcg_t2i": t2i, "ndcg_ave": (i2t + t2i) / 2, "map_i2t": i2t - 10,
            "map_t2i": t2i - 10, "map_ave": (i2t + t2i) / 2 - 10, "ndcg_k": 500, "map_k": 500, **extra}


def recall_metrics(r1, prefix=""):
    keys = {"r1_i2t": r1, "r5_i2t": r1 + 10, "r10_i2t": r1 + 15, "medr_i2t": 2.0, "meanr_i2t": 5.0,
            "r1_t2i": r1 - 5, "r5_t2i": r1 + 5, "r10_t2i": r1 + 12, "medr_t2i": 3.0, "meanr_t2i": 7.0}
    keys["rsum"] = sum(v for k, v in keys.items() if k[1:].split("_")[0] in ("1", "5", "10"))
    return {prefix + k: v for k, v in keys.items()}


@pytest.fixture
def reports(tmp_path) -> Path:
    r = tmp_path / "reports"
    write(r / "metrics/mirflickr/ss.json", label_metrics(70.0, 72.0, protocol="all", f1_image=0.7, f1_text=0.55,
                                                         dataset="mirflickr", method="ss"))
    write(r / "metrics/mirflickr/dscmr.json", label_metrics(60.0, 61.0, protocol="all"))
    write(r / "metrics/shapes/ss.json", label_metrics(80.0, 85.0, protocol="all", **recall_metrics(40.0)))
    write(r / "metrics/shapes/novel.json", label_metrics(30.0, 31.0, protocol="all"))
    coco = {**label_metrics(71.0, 81.0, protocol="coco5k"),
            **{f"coco1k_{k}": v for k, v in label_metrics(76.0, 88.0).items()}}
    write(r / "metrics/coco/ss.json", coco)
    write(r / "metrics/flickr30k/scan_consistency.json", {"protocol": "all", **recall_metrics(60.0)})
    return r


def test_collect_and_columns(reports):
    records = collect_metrics(reports / "metrics")
    assert [(r.dataset, r.method) for r in records] == [
        ("coco", "ss"), ("flickr30k", "scan_consistency"), ("mirflickr", "dscmr"), ("mirflickr", "ss"),
        ("shapes", "novel"), ("shapes", "ss")]
    coco = dict(column_views(records[0]))
    assert set(coco) == {"COCO1K", "COCO5K"}
    assert coco["COCO1K"]["ndcg_i2t"] == 76.0 and coco["COCO5K"]["ndcg_i2t"] == 71.0
    assert column_views(records[3])[0][0] == "FLICKR25K"
    assert column_views(records[5])[0][0] == "shapes"


def cells(markdown: str, row_start: str) -> list[str]:
    line = next(l for l in markdown.splitlines() if l.startswith(f"| {row_start}"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_results_tables(reports, tmp_path):
    summary = build_report(reports, tmp_path / "data", current_lambda=0.1)
    text = (reports / "results.md").read_text()
    header = cells(text, "Method | FLICKR25K I2T")
    ours = dict(zip(header, cells(text, "Ours (`ss`)")))
    assert ours["FLICKR25K I2T"] == "70.0 / 66.3" and ours["FLICKR25K Ave"] == "71.0 / 68.8"
    assert ours["COCO1K T2I"] == "88.0 / 90.0" and ours["COCO5K I2T"] == "71.0 / 72.1"
    assert ours["NUS-WIDE I2T"] == "– / 75.2"
    assert ours["shapes I2T"] == "80.0" and ours["shapes Ave"] == "82.5"
    dscmr = dict(zip(header, cells(text, "DSCMR (`dscmr`)")))
    assert dscmr["FLICKR25K T2I"] == "61.0 / 66.5"
    assert dict(zip(header, cells(text, "SCML")))["COCO1K I2T"] == "– / –"
    novel = dict(zip(header, cells(text, "`novel`")))
    assert novel["shapes T2I"] == "31.0" and novel["FLICKR25K I2T"] == "– / –"
    # Recall@K: ours then the published rows of the dataset
    flickr30k = text.split("#### Flickr30k")[1].split("####")[0]
    assert "`scan_consistency` (cf. 002 'Ours') | 60.0 | 70.0 | 75.0 | 2.0 | 55.0" in flickr30k
    assert "Ours [published, papers/002 (SCAN + semantic consistency)] | 68.5 | 90.8 | 95.8 | – | 53.0" in flickr30k
    assert "| 473.3 |" in flickr30k  # rsum of papers/002's Flickr30k 'Ours' row, computed here
    assert "#### shapes" in text and "#### COCO1K" not in text
    # Micro-F1
    f1_header = cells(text, "Method | FLICKR25K Image")
    assert dict(zip(f1_header, cells(text, "Ours (`ss`) | 0.700")))["FLICKR25K Text"] == "0.550 / 0.556"
    assert "Independent (`st`) | – / 0.672 | – / 0.530" in text
    # no sweep, no histories, no rankings: notes instead of figures
    assert "No lambda sweep found" in text and "No training histories" in text and "No rankings" in text
    assert summary["lambda_curves"] == 0 and not (reports / "plots/lambda_sensitivity.png").exists()
    points = json.loads((reports / "lambda_sensitivity.json").read_text())
    assert [(p["dataset"], p["method"], p["lambda"]) for p in points] == [
        ("coco", "ss", 0.1), ("mirflickr", "ss", 0.1), ("shapes", "ss", 0.1)]


def test_sweep_points_from_real_dvc_output():
    exp_show = json.loads(SAMPLE.read_text())
    points = sweep_points(split_sweeps(read_states(exp_show)))
    by_key = {(p["method"], p["lambda"]): p for p in points}
    assert sorted(by_key) == [("dscmr", 0.01), ("dscmr", 0.1), ("dscmr", 1.0), ("ss", 0.01), ("ss", 0.1), ("ss", 1.0)]
    assert by_key[("ss", 1.0)]["experiment"] == "workspace"  # the workspace comes first in dvc's output
    assert by_key[("ss", 0.01)]["experiment"] == "white-view"
    assert by_key[("ss", 0.01)]["ndcg_i2t"] == pytest.approx(50 + 10 * 0.01 / 1.01)
    assert by_key[("ss", 0.1)]["dataset"] == "shapes"
    # the current workspace results fill in values the experiments lack, never replace them
    extra = [{"dataset": "shapes", "method": "ss", "lambda": 10.0, "ndcg_i2t": 1.0, "ndcg_t2i": 1.0, "ndcg_ave": 1.0},
             {"dataset": "shapes", "method": "ss", "lambda": 1.0, "ndcg_i2t": 0.0, "ndcg_t2i": 0.0, "ndcg_ave": 0.0}]
    merged = merge_points(points, extra)
    assert [p["lambda"] for p in merged if p["method"] == "ss"] == [0.01, 0.1, 1.0, 10.0]
    assert next(p for p in merged if p["method"] == "ss" and p["lambda"] == 1.0)["ndcg_i2t"] == 55.0


@pytest.mark.parametrize("bad,message", [
    ({"rev": "x"}, "list printed by `dvc exp show --json`"),
    ([{"name": "no rev"}], "entry 0 is not an experiment state"),
])
def test_sweep_points_bad_input(bad, message):
    with pytest.raises(ReportInputError, match=message):
        read_states(bad)


def test_sweep_skips_states_without_ndcg_metrics():
    exp_show = [{"rev": "workspace", "data": {"params": {"params.yaml": {"data": {"lambda": 1, "seed": 0}}},
                                              "metrics": {"data/x/prepare_stats.json": {"data": {"images": 3}}}}},
                {"rev": "c", "data": {"params": {"params.yaml": {"data": {"lambda": 0.5, "seed": 0}}},
                                      "metrics": {"data/x/prepare_stats.json": {"data": {"images": 3}}}}}]
    assert sweep_points(split_sweeps(read_states(exp_show))) == []
    assert split_sweeps(read_states([{"rev": "workspace", "data": {}}])) is None  # no params: no sweep


def test_lambda_plot_and_training_curves(reports, tmp_path):
    experiments = tmp_path / "experiments.json"
    shutil.copy(SAMPLE, experiments)
    for method, offset in (("ss", 0.0), ("dscmr", 0.3)):
        write(reports / f"training/shapes/{method}.json",
              [{"epoch": e, "loss": 2.0 / e + offset, "val_ndcg_ave": 50 + e, "val_n_images": 200, "seconds": 1.5}
               for e in range(1, 6)])
    write(reports / "training/shapes/dual_path.json",  # stage I has no ranking part (null), stage II has
          [{"epoch": e, "loss": 3.0 / e, "ranking": None if e == 1 else 0.5, "val_ndcg_ave": 40 + e,
            "val_rsum": 100 + e, "seconds": 1.0} for e in range(1, 4)])
    write(reports / "training/shapes/cca.json",
          [{"epoch": 1, "loss": 0.25, "fit_pairs": 8000, "val_ndcg_ave": 61.5, "val_rsum": 90.0, "seconds": 0.3}])
    summary = build_report(reports, tmp_path / "data", experiments=experiments, current_lambda=0.1,
                           report_params={"lambda_methods": ["ss", "dscmr"]})
    text = (reports / "results.md").read_text()
    assert summary["lambda_curves"] == 2 and summary["training_plots"] == ["shapes"]
    assert summary["training_panels"] == {"shapes": [
        "instance-level: validation rsum", "instance-level: training loss",
        "label-wise: validation NDCG", "label-wise: training loss"]}
    assert "| cca | 8000 | 0.2500 | 61.50 | 90.00 | 0.3 |" in text  # a closed-form fit is a table row, not a curve
    assert "![lambda sensitivity](plots/lambda_sensitivity.png)" in text
    assert "![training curves: shapes](plots/training_shapes.png)" in text
    for png in ("lambda_sensitivity.png", "training_shapes.png"):
        with Image.open(reports / "plots" / png) as img:
            assert img.format == "PNG" and img.width > 300
    points = json.loads((reports / "lambda_sensitivity.json").read_text())
    assert {p["lambda"] for p in points if p["dataset"] == "shapes"} == {0.01, 0.1, 1.0}


def make_dataset(tmp_path: Path, n: int = 6):
    """A tiny prepared table with real image files, 2 captions per image."""
    root = tmp_path
    image_dir = root / "data/tiny/raw"
    image_dir.mkdir(parents=True)
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
    for i in range(n):
        Image.new("RGB", (40, 30), colours[i % 3]).save(image_dir / f"{i}.png")
    rows = {
        "image_id": list(range(n)), "file_path": [f"data/tiny/raw/{i}.png" for i in range(n)],
        "width": [40] * n, "height": [30] * n,
        "captions": [[f"a {['red', 'green', 'blue'][i % 3]} square number {i}", f"picture {i} <b>bold</b>"]
                     for i in range(n)],
        "labels": [[i % 3] for i in range(n)], "boxes": [[] for _ in range(n)], "box_labels": [[] for _ in range(n)],
        "split": ["test"] * n,
    }
    write_table(rows, ["red", "green", "blue"], "tiny", root / "data/tiny/table.parquet")
    return root


def test_qualitative_page(reports, tmp_path):
    root = make_dataset(tmp_path)
    rng = np.random.default_rng(0)
    image_emb = rng.normal(size=(6, 4))
    caption_rows = np.repeat(np.arange(6), 2)
    text_emb = image_emb[caption_rows] + 0.01 * rng.normal(size=(12, 4))
    top = top_retrievals((image_emb, text_emb), n=10)
    write_rankings(reports / "rankings/tiny/ss.npz", np.arange(6), caption_rows, np.tile([0, 1], 6),
                   top["i2t_top"], top["t2i_top"])
    summary = build_report(reports, root / "data", root=root, report_params={"qualitative_queries": 3})
    assert summary["qualitative_pages"] == ["tiny/ss"]
    page = (reports / "qualitative/tiny/ss.html").read_text()
    assert page.count("data:image/jpeg;base64,") == 3 + 3 * 3  # 3 image queries + 3 caption queries x top-3
    assert page.count("<li>") == 3 * 5  # 3 image queries x top-5 captions
    assert "&lt;b&gt;bold&lt;/b&gt;" in page and "<b>bold</b>" not in page  # captions are escaped
    assert "★" in page  # near-duplicate embeddings: ground truth ranks first
    assert "[tiny/ss](qualitative/tiny/ss.html)" in (reports / "results.md").read_text()


def test_bad_inputs(tmp_path, reports):
    with pytest.raises(FileNotFoundError, match="no <dataset>/<method>.json metrics files"):
        build_report(tmp_path / "empty", tmp_path / "data")
    (reports / "metrics/shapes/broken.json").write_text("{not json")
    with pytest.raises(ReportInputError, match="broken.json: not a readable JSON metrics file"):
        collect_metrics(reports / "metrics")
    write(reports / "metrics/shapes/broken.json", {"dataset": "coco"})
    with pytest.raises(ReportInputError, match="field 'dataset' is 'coco' but the path says 'shapes'"):
        collect_metrics(reports / "metrics")
    write(reports / "metrics/shapes/broken.json", {"ndcg_i2t": [1, 2]})
    with pytest.raises(ReportInputError, match="field 'ndcg_i2t' must be a number"):
        collect_metrics(reports / "metrics")
    (reports / "metrics/shapes/broken.json").unlink()
    write(reports / "training/shapes/ss.json", {"epoch": 1})
    with pytest.raises(ReportInputError, match="list of per-epoch objects"):
        build_report(reports, tmp_path / "data")
    (reports / "training/shapes/ss.json").unlink()
    (reports / "rankings/shapes").mkdir(parents=True)
    (reports / "rankings/shapes/ss.npz").write_bytes(b"junk")
    with pytest.raises(ValueError, match="ss.npz: not a readable .npz file"):
        build_report(reports, tmp_path / "data")


def test_report_command(reports, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("lambda: 0.1\nreport:\n  qualitative_queries: 2\n")
    result = CliRunner().invoke(app, ["report", "--reports-dir", str(reports)])
    assert result.exit_code == 0, result.output
    assert re.search(r"report: 6 metrics files, 0 training plots, 0 lambda curves, 0 qualitative pages", result.output)
    assert (reports / "results.md").is_file()
    result = CliRunner().invoke(app, ["report", "--reports-dir", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "no <dataset>/<method>.json metrics files" in result.output
    assert "report.thumbnail_px" in CliRunner().invoke(app, ["report", "--help"]).output


def test_training_figure_keeps_legends_off_the_data():
    from pipeline.reporting.plots import training_figure

    histories = {f"m{i}": [{"epoch": e, "loss": 1.0 / e + i, "val_ndcg_ave": 10.0 * e + i} for e in range(1, 4)]
                 for i in range(19)}
    fig, panels = training_figure(histories, "t")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is not None:
            assert not legend.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))
    assert panels == ["label-wise: validation NDCG", "label-wise: training loss"]


def test_metrics_files_hold_measurements_only_and_the_report_reads_them(tmp_path):
    from pipeline.metrics import evaluate_similarity
    from pipeline.params import validate
    from pipeline.reporting.collect import MetricsRecord
    from pipeline.training.scoring import metrics_file

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=(6, 4))
    result = evaluate_similarity(rng.normal(size=(6, 12)), image_labels=labels, caption_image=np.repeat(np.arange(6), 2),
                                 ndcg_k=5, map_k=5)
    written = metrics_file(result)
    assert not {"n_images", "n_texts", "ndcg_k", "map_k", "protocol"} & set(written)
    assert written["ndcg_ave"] == result["ndcg_ave"] and written["rsum"] == result["rsum"]
    # A COCO file with one protocol: the protocol moves into the key names.
    coco = {**{k: v for k, v in result.items()}, "protocol": "coco5k"}
    keyed = metrics_file(coco)
    assert "coco5k_ndcg_ave" in keyed and "ndcg_ave" not in keyed and "coco5k_n_images" not in keyed
    (column, view), = column_views(MetricsRecord("coco", "ss", tmp_path / "m.json", keyed))
    assert column == "COCO5K" and view["ndcg_ave"] == result["ndcg_ave"]
    (column, view), = column_views(MetricsRecord("coco_mini", "ss", tmp_path / "m.json", keyed))
    assert view["ndcg_ave"] == result["ndcg_ave"]
    # The cut-offs come from the params.
    reports = tmp_path / "reports"
    write(reports / "metrics/shapes/ss.json", {**written, "selected_epoch": 3})
    build_report(reports, tmp_path / "data", metrics_params=validate({"metrics": {"ndcg_k": 5, "map_k": 5}})["metrics"])
    assert "| 5 / 5 |" in (reports / "results.md").read_text()


def test_intervals_and_differences_are_rendered(tmp_path):
    """Metrics and per-query files written as the evaluate stage writes them, for three methods."""
    from pipeline.metrics import evaluate_similarity
    from pipeline.metrics.per_query import write_per_query
    from test_metrics_evaluate import make_data

    img, txt, labels, caption_image = make_data(n_img=40, seed=21)
    reports = tmp_path / "reports"
    rng = np.random.default_rng(21)
    noise = {"ss": 0.0, "close": 0.05, "random": 50.0}  # "random" scores are almost pure noise
    for method, scale in noise.items():
        per: dict = {}
        noisy = txt + scale * rng.normal(size=txt.shape).astype(np.float32)
        metrics = evaluate_similarity((img, noisy), labels, None, caption_image, recall_ks=(1, 5, 10), per_query=per)
        write(reports / f"metrics/shapes/{method}.json", metrics)
        write_per_query(reports / f"per_query/shapes/{method}.npz", per)
    write(reports / "metrics/shapes/unpaired.json", label_metrics(50.0, 50.0, protocol="all"))
    summary = build_report(reports, tmp_path / "data", report_params={"bootstrap_resamples": 200})
    text = (reports / "results.md").read_text()
    assert summary["with_intervals"] == 3
    ss = json.loads((reports / "metrics/shapes/ss.json").read_text())
    interval = r"\[(\d+\.\d), (\d+\.\d)\]"
    cell = dict(zip(cells(text, "Method | FLICKR25K I2T"), cells(text, "Ours (`ss`)")))["shapes Ave"]
    m = re.fullmatch(rf"(\d+\.\d) {interval}", cell)
    assert m and m[1] == f"{ss['ndcg_ave']:.1f}" and float(m[2]) <= ss["ndcg_ave"] <= float(m[3]) + 0.05, cell
    recall = text.split("## Instance-level retrieval")[1]
    recall_row = next(l for l in recall.split("#### shapes")[1].splitlines() if l.startswith("| `ss`"))
    assert len(re.findall(interval, recall_row)) == 9  # R@1/5/10 and MedR both ways, and rsum
    assert "No interval (no `per_query/<ds>/<method>.npz`: re-run `xmr evaluate`): shapes/unpaired." in text
    differences = text.split("## Differences to `ss`")[1].split("\n## ")[0]
    header = cells(differences, "Method")
    assert header[1] == "NDCG@k Ave: method − `ss`" and header[3] == "rsum: method − `ss`"
    random_row = dict(zip(header, cells(differences, "`random`")))
    assert random_row[header[1]].startswith("**-")  # far worse than ss: the interval excludes 0
    close_row = dict(zip(header, cells(differences, "`close`")))
    low, high = (float(v) for v in re.search(r"\[([-+]\d+\.\d), ([-+]\d+\.\d)\]", close_row[header[1]]).groups())
    assert low <= 0.05 and high >= -0.05 and not close_row[header[1]].startswith("**")  # not distinguishable
    assert "`unpaired`" not in differences


def test_per_query_files_of_another_test_set_are_refused(tmp_path):
    from pipeline.metrics import evaluate_similarity
    from pipeline.metrics.per_query import write_per_query
    from test_metrics_evaluate import make_data

    reports = tmp_path / "reports"
    for method, n_img in (("ss", 30), ("other", 20)):
        img, txt, labels, caption_image = make_data(n_img=n_img, seed=n_img)
        per: dict = {}
        write(reports / f"metrics/shapes/{method}.json",
              evaluate_similarity((img, txt), labels, None, caption_image, per_query=per))
        write_per_query(reports / f"per_query/shapes/{method}.npz", per)
    with pytest.raises(ValueError, match=r"ss.npz: its test queries .* differ from the other methods'"):
        build_report(reports, tmp_path / "data")


def test_rows_name_the_recipe(reports, tmp_path):
    build_report(reports, tmp_path / "data", current_lambda=0.1, recipes={"ss": "official", "dscmr": "paper"})
    text = (reports / "results.md").read_text()
    assert cells(text, "Ours (`ss`, official)")[1] == "70.0 / 66.3"
    assert any(line.startswith("| DSCMR (`dscmr`, paper)") for line in text.splitlines())
    assert "| FLICKR25K | `ss`, official |" in text          # the label-metrics table
    assert "`scan_consistency` (cf." in text                  # a method given no recipe keeps its name


def test_f1_three_ways_table(reports, tmp_path):
    path = reports / "metrics/mirflickr/ss.json"
    values = json.loads(path.read_text())
    values.update(f1_image_tuned=0.61, f1_image_topk=0.72, f1_text_tuned=0.5, f1_text_topk=0.66)
    path.write_text(json.dumps(values))
    build_report(reports, tmp_path / "data", current_lambda=0.1, recipes={"ss": "official"})
    text = (reports / "results.md").read_text()
    assert "| FLICKR25K | `ss`, official | 0.700 | 0.610 | 0.720 | 0.550 | 0.500 | 0.660 |" in text
