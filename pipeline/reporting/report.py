"""`build_report`: every metrics file -> reports/results.md, PNG plots, plot data, qualitative pages.

Inputs (under `reports_dir` unless noted):
  metrics/<ds>/<method>.json     evaluate_similarity dicts (required: at least one)
  training/<ds>/<method>.json    per-epoch histories (optional) -> plots/training_<ds>.png
  rankings/<ds>/<method>.npz     top retrievals (optional) + <data_dir>/<ds>/table.parquet
                                 -> qualitative/<ds>/<method>.html
  per_query/<ds>/<method>.npz    per-query values (optional) -> a 95% bootstrap interval on each of
                                 our numbers, and each method's difference to the reference method
  experiments file               `dvc exp show --json` output (optional) -> the lambda sweep and the
                                 seed sweep (`report.seeds`), split and checked by `sweep.py`
Outputs: results.md (with the machine classes of its numbers and, where the files at git HEAD hold
other numbers, their difference beside the seed spread: `provenance.py`), claims.md + claims.json
(the papers' claims with verdicts), plots/ (PNG), lambda_sensitivity.json (DVC plot data), qualitative/.
Each output is written under a temporary name and renamed when complete.
"""
from __future__ import annotations

import json
from pathlib import Path

from pipeline.data.table import read_table, table_path
from pipeline.io import atomic_output
from pipeline.metrics.evaluation_set import require_same_evaluation
from pipeline.metrics.rankings import read_rankings
from pipeline.reporting import tables
from pipeline.reporting.collect import collect_metrics, column_views, read_json
from pipeline.reporting.claims import check_claims, claims_json, claims_markdown
from pipeline.reporting.convergence import convergence_markdown, dataset_convergence, rising_methods
from pipeline.reporting.intervals import dataset_intervals, differences_table
from pipeline.reporting.plots import closed_form_rows, plot_lambda_sensitivity, plot_training_curves, read_history
from pipeline.reporting.provenance import NOT_MEASURED, compare_committed, machine_classes, provenance_markdown
from pipeline.reporting.published import NOTES
from pipeline.reporting.qualitative import render_page
from pipeline.reporting.seeds import seed_table
from pipeline.reporting.sweep import (SWEPT, Sweeps, merge_points, read_states, seed_runs, split_sweeps, stale_params,
                                      sweep_points, workspace_points)
from pipeline.reporting.tables import RISING_MARK

PARAM = "lambda"


def _read_sweeps(experiments: Path | None) -> Sweeps | None:
    """The experiments file split into its lambda and seed sweeps (None when there is no file)."""
    if experiments is None or not experiments.is_file():
        return None
    exp_show = read_json(experiments, "`dvc exp show --json` output")
    return split_sweeps(read_states(exp_show), experiments.as_posix())


def _sweep(records, sweeps: Sweeps | None, current_lambda: float) -> tuple[list[dict], str]:
    """Lambda sweep points (the current results fill in) and a sentence on where they came from."""
    points = workspace_points(records, current_lambda, PARAM)
    source = f"the current results only (lambda = {current_lambda:g})"
    if sweeps is not None:
        points = merge_points(sweep_points(sweeps, PARAM), points, PARAM)
        source = f"`{sweeps.source}` (`dvc exp show --json`) and the current results"
    return points, source


def _sweep_notes(sweeps: Sweeps | None, current_params: dict | None, records) -> list[str]:
    """Where the experiments file was exported from other params or other results than the workspace's,
    counting only the params that bear on the swept methods and datasets (`sweep.bears_on`): adding or
    changing another method does not make a sweep stale."""
    if sweeps is None or not current_params:
        return []

    notes = []
    diffs = stale_params(current_params, sweeps.baseline.params, set(sweeps.baseline.metrics))
    if diffs:
        shown = ", ".join(f"{k} ({a!r} there, {b!r} here)" for k, (a, b) in list(diffs.items())[:6])
        notes.append(f"The sweeps in `{sweeps.source}` were run from other params than the current ones: {shown}"
                     f"{' and more' if len(diffs) > 6 else ''}. Rerun them and export the file again.")
    current = {(r.dataset, r.method): r.values for r in records}
    if not diffs and all(sweeps.baseline.params.get(k) == current_params.get(k) for k in SWEPT):
        stale = sorted(f"{d}/{m}" for (d, m), v in sweeps.baseline.metrics.items()
                       if (d, m) in current and any(current[(d, m)].get(k) != x for k, x in v.items()
                                                    if k not in NOT_MEASURED))
        if stale:
            notes.append(f"The baseline of `{sweeps.source}` holds other numbers than the current metrics files for "
                         f"{', '.join(stale[:5])}{' and more' if len(stale) > 5 else ''}: the file was exported from "
                         "other results (other code, or another machine class: docs/reliability.md \"Determinism\"); "
                         "rerun the sweep here.")
    return notes


def build_report(reports_dir: str | Path = "reports", data_dir: str | Path = "data", *,
                 experiments: str | Path | None = None, current_lambda: float = 0.1,
                 report_params: dict | None = None, metrics_params: dict | None = None,
                 recipes: dict[str, str] | None = None, root: str | Path = ".",
                 current_params: dict | None = None, datasets: list[str] | None = None) -> dict:
    """Write the report; returns a summary (counts and written paths). `metrics_params` (the `metrics`
    section) gives the NDCG / mAP cut-offs, which metrics files no longer repeat; `recipes` (method ->
    paper / official, from `methods.<m>.recipe`) names each row's recipe; `current_params` (params.yaml
    as written) lets the report say when the experiments file was run from other params; `datasets` (the
    params' list) leaves out the files of datasets no longer listed."""
    reports_dir, data_dir, root = Path(reports_dir), Path(data_dir), Path(root)
    opts = {"qualitative_queries": 6, "thumbnail_px": 128, "lambda_methods": ["ss"], "bootstrap_resamples": 1000,
            "bootstrap_seed": 0, "reference_method": "ss", "seeds": [], **(report_params or {})}
    records = collect_metrics(reports_dir / "metrics")
    if datasets is not None:  # files of a dataset no longer in `datasets` are left over, not results
        records = [r for r in records if r.dataset in datasets]
    for record in records:
        record.recipe = (recipes or {}).get(record.method, "")
    for record in records:
        for key in ("ndcg_k", "map_k"):
            if metrics_params and key in metrics_params:
                record.values.setdefault(key, metrics_params[key])
    if not records:
        raise FileNotFoundError(f"{reports_dir / 'metrics'}: no <dataset>/<method>.json metrics files "
                                "(run `xmr evaluate` / `dvc repro` first)")
    summary: dict = {"metrics_files": len(records), "training_plots": [], "training_panels": {},
                     "closed_form_fits": {}, "qualitative_pages": [], "missing_images": {}}
    intervals = dataset_intervals(records, reports_dir / "per_query", opts["bootstrap_resamples"],
                                  opts["bootstrap_seed"])
    summary["with_intervals"] = sum(bool(r.intervals) for r in records)
    summary["differences"] = {ds: differences_table(iv, opts["reference_method"], records)
                              for ds, iv in sorted(intervals.items())}

    # the sweeps of the experiments file: lambda (plot, lambda claim) and seeds (mean ± std, claims)
    sweeps = _read_sweeps(Path(experiments) if experiments else None)
    all_points, sweep_source = _sweep(records, sweeps, current_lambda)
    points = [p for p in all_points if p["method"] in opts["lambda_methods"]]
    runs = seed_runs(sweeps, opts["seeds"])
    summary["seed_runs"] = {seed: state.name for seed, state in runs.items()}
    summary["seed_tables"] = {ds: seed_table(runs, ds) for ds in sorted({r.dataset for r in records})} if runs else {}
    summary["seeds_asked"] = list(opts["seeds"])
    summary["experiments_source"] = sweeps.source if sweeps else ""
    summary["sweep_notes"] = _sweep_notes(sweeps, current_params, records)

    summary["dataset_notes"] = dataset_notes(records, current_params, reports_dir)
    # where the numbers came from: machine classes, and the committed numbers against the seed spread
    summary["machine_classes"] = machine_classes(records)
    summary["committed"] = compare_committed(records, runs)

    # plots/: training curves and the lambda sweep
    training = {}
    for path in sorted((reports_dir / "training").glob("*/*.json")):
        training.setdefault(path.parent.name, {})[path.stem] = read_history(path)
    summary["convergence"] = {ds: dataset_convergence(h) for ds, h in training.items()}
    summary["still_rising"] = sorted(rising_methods(summary["convergence"]))
    for record in records:
        record.still_rising = record.method in summary["still_rising"]

    # claims.md: the papers' claims with their evidence (a method still rising is marked there too)
    claims = check_claims(records, intervals, runs, all_points)
    summary["claims"] = {f"{c.claim.id}@{c.dataset}": c.verdict for c in claims}
    with atomic_output(reports_dir / "claims.md") as tmp:
        unswept = [ds for ds, table in summary["seed_tables"].items() if not table]
        seed_notes = [f"No seed sweep was run on {ds}: its comparisons rest on the intervals over test queries only."
                      for ds in unswept]
        tmp.write_text(claims_markdown(claims, list(runs), summary["sweep_notes"] + seed_notes,
                                       set(summary["still_rising"])), encoding="utf-8")
    with atomic_output(reports_dir / "claims.json") as tmp:
        tmp.write_text(json.dumps(claims_json(claims), indent=2) + "\n")
    with atomic_output(reports_dir / "plots") as plots_tmp:
        plots_tmp.mkdir()
        for dataset, histories in sorted(training.items()):
            panels = plot_training_curves(histories, f"Training: {dataset}", plots_tmp / f"training_{dataset}.png")
            if panels:
                summary["training_plots"].append(dataset)
                summary["training_panels"][dataset] = panels
            fits = closed_form_rows(histories)
            if fits:
                summary["closed_form_fits"][dataset] = fits
        curves = plot_lambda_sensitivity(points, plots_tmp / "lambda_sensitivity.png", PARAM)
    summary["lambda_curves"] = curves
    with atomic_output(reports_dir / "lambda_sensitivity.json") as tmp:
        tmp.write_text(json.dumps(points, indent=2) + "\n")

    # qualitative/<ds>/<method>.html
    rankings = sorted(p for p in (reports_dir / "rankings").glob("*/*.npz")
                      if datasets is None or p.parent.name in datasets)
    tables_cache = {}
    with atomic_output(reports_dir / "qualitative") as qual_tmp:
        qual_tmp.mkdir()
        for path in rankings:
            dataset, method = path.parent.name, path.stem
            ranking = read_rankings(path)
            record = next((r for r in records if r.dataset == dataset and r.method == method), None)
            if record is not None:
                require_same_evaluation(record.path, record.values, path, ranking)
            if dataset not in tables_cache:
                tables_cache[dataset] = read_table(table_path(data_dir, dataset))
            absent: list[str] = []
            page = render_page(ranking, tables_cache[dataset], f"{dataset} / {method}", root,
                               opts["qualitative_queries"], opts["thumbnail_px"], missing=absent)
            if absent:
                summary["missing_images"].setdefault(dataset, set()).update(absent)
            (qual_tmp / dataset).mkdir(exist_ok=True)
            (qual_tmp / dataset / f"{method}.html").write_text(page, encoding="utf-8")
            summary["qualitative_pages"].append(f"{dataset}/{method}")

    text = results_markdown(records, summary, sweep_source, opts["lambda_methods"], opts)
    with atomic_output(reports_dir / "results.md") as tmp:
        tmp.write_text(text, encoding="utf-8")
    return summary


COCO_KINDS = ("coco", "coco2014")


def _test_images(reports_dir: Path, dataset: str) -> int | None:
    """The test split's image count, from any rankings file of the dataset (None without one)."""
    for path in sorted((reports_dir / "rankings" / dataset).glob("*.npz")):
        return len(read_rankings(path)["image_rows"])
    return None


def dataset_notes(records, current_params: dict | None, reports_dir: Path) -> list[str]:
    """One line per dataset of the run that has no metrics files, and per COCO-kind dataset whose columns
    are not the COCO protocols (coco5k / coco1k need the 5,000-image test set), saying why."""
    params = current_params or {}
    have = {r.dataset for r in records}
    notes = [f"`{ds}` is in `datasets` but has no metrics files in `reports/metrics/{ds}/`: it was not run here "
             "(`make repro` skips a dataset read in place whose folder is absent, saying so; docs/datasets.md)."
             for ds in params.get("datasets", []) if ds not in have]
    for ds in sorted(have):
        kind = ((params.get("data") or {}).get(ds) or {}).get("kind")
        if kind not in COCO_KINDS or any(k.startswith(("coco5k_", "coco1k_")) for r in records if r.dataset == ds
                                         for k in r.values):
            continue
        n = _test_images(reports_dir, ds)
        size = f"has {n:,} images" if n is not None else "size is unknown here (no rankings file)"
        notes.append(f"`{ds}` (kind {kind}): the COCO protocols coco5k and coco1k are not computed: both need COCO's "
                     f"5,000-image test set (coco1k averages its five 1,000-image folds), and the test split of "
                     f"`{ds}` {size}. Its column uses protocol `all` (every test image and caption) and has no "
                     "published counterpart.")
    return notes


def _num(value, digits: int) -> str:
    return "-" if not isinstance(value, (int, float)) else f"{value:.{digits}f}"


def _ks(records, key: str) -> str:
    values = sorted({r.values[key] for r in records if key in r.values})
    return "/".join(str(v) for v in values) or "k"


def _intervals_markdown(records, summary: dict, opts: dict) -> list[str]:
    """The paragraph on how to read the intervals, and the records that have none."""
    out = [f"Our numbers carry a 95% interval `[low, high]` from a bootstrap over the test images "
           f"({opts['bootstrap_resamples']} resamples, seed {opts['bootstrap_seed']}; an image is resampled with "
           "its caption queries). It measures how much the number would move on another test set of the same "
           "size; it does not include training noise (another seed gives another model: see docs/results.md, "
           "\"How to read the intervals and the verdicts\").", ""]
    missing = [f"{r.dataset}/{r.method}" for r in records if not r.intervals]
    if missing:
        out += [f"No interval (no `per_query/<ds>/<method>.npz`: re-run `xmr evaluate`): {', '.join(missing)}.", ""]
    return out


def _differences_markdown(summary: dict, reference: str) -> list[str]:
    out = [f"## Differences to `{reference}` (paired bootstrap)", "",
           f"Each cell: method minus `{reference}` on the same resampled test images, with its 95% interval. "
           "**Bold**: the interval excludes 0, so on this test set the sign of the difference is settled; "
           "otherwise the two methods are not distinguishable here.", ""]
    tables_found = [(ds, t) for ds, t in summary.get("differences", {}).items() if t]
    for dataset, table in tables_found:
        out += [f"#### {dataset}", "", table, ""]
    if not tables_found:
        out += [f"No dataset has per-query values for `{reference}` and another method "
                "(`report.reference_method` names the method to compare with).", ""]
    return out


def _seeds_markdown(summary: dict) -> list[str]:
    """The seed sweep (mean ± std over seeds) and the pointer to the claims."""
    out = ["## Over training seeds", ""]
    runs = summary.get("seed_runs") or {}
    how = ("To make one: `dvc exp run --queue -S seed=<n>` for each seed, `dvc queue start`, "
           "`dvc exp show --json > reports/experiments.json`, set `report.seeds`, then `dvc repro report` "
           "(docs/results.md, \"Seeds\").")
    if runs:
        out += [f"Mean ± sample std over {len(runs)} seeds ({', '.join(f'{s}: `{n}`' for s, n in runs.items())}; "
                "each seed trains every model again, detector and word vectors included). The intervals above "
                "are over test queries for the seed of the current results; this spread is the training noise.", ""]
        for dataset, table in summary.get("seed_tables", {}).items():
            out += [f"#### {dataset}", ""]
            out += [table, ""] if table else [
                f"No seed sweep was run on {dataset}: the experiments file holds no metrics of it, so its numbers "
                "carry intervals over test queries only. " + how, ""]
    elif summary.get("seeds_asked"):
        out += [f"No seed sweep was run: `report.seeds` names seeds {', '.join(map(str, summary['seeds_asked']))}, but "
                f"{('`' + summary['experiments_source'] + '`') if summary.get('experiments_source') else 'no experiments file'} "
                "holds no experiment that differs from the baseline in `seed` only. The numbers above carry "
                "intervals over test queries only. " + how, ""]
    else:
        out += ["No seed sweep (`report.seeds` is empty). " + how, ""]
    out += [f"- {note}" for note in summary.get("sweep_notes", [])] + ([""] if summary.get("sweep_notes") else [])
    verdicts = summary.get("claims", {})
    if verdicts:
        counts = {v: list(verdicts.values()).count(v) for v in dict.fromkeys(verdicts.values())}
        out += ["The papers' claims, each with its evidence and a verdict, are in [claims.md](claims.md) "
                f"({', '.join(f'{n} {v}' for v, n in counts.items())}).", ""]
    return out


def results_markdown(records, summary: dict, sweep_source: str, lambda_methods: list[str],
                     opts: dict | None = None) -> str:
    opts = {"bootstrap_resamples": 1000, "bootstrap_seed": 0, "reference_method": "ss", **(opts or {})}
    datasets = sorted({r.dataset for r in records})
    methods = sorted({r.method for r in records})
    views = [view for r in records for _, view in column_views(r)]
    has = {key: any(key in view for view in views) for key in ("ndcg_i2t", "r1_i2t", "f1_image")}
    out = ["# Results", "",
           f"Generated by `xmr report` from {len(records)} metrics files in `reports/metrics/` "
           f"(datasets: {', '.join(datasets)}; methods: {', '.join(methods)}). Do not edit by hand.", ""]
    out += [f"- {note}" for note in summary.get("dataset_notes", [])] + ([""] if summary.get("dataset_notes") else [])
    out += _intervals_markdown(records, summary, opts)
    if summary.get("still_rising"):
        out += [f"{RISING_MARK} after a method's name: its validation curve was still rising at its last epoch "
                f"({', '.join(f'`{m}`' for m in summary['still_rising'])}; see \"Convergence on <dataset>\"), so "
                "its numbers measure how far it got in its epochs, not what it reaches.", ""]

    out += [f"## Label-wise retrieval: NDCG@{_ks(records, 'ndcg_k')} (papers/000 Table 1 layout)", "",
            "Each cell: **ours / published** (papers/000 Table 1). `–`: not run here, or not reported by the paper. "
            "Columns of datasets the paper does not have show ours only. COCO columns come from the coco5k / "
            "coco1k protocols.", ""]
    out += [tables.ndcg_table(records), ""]
    if has["ndcg_i2t"]:
        out += ["### Every label-wise metric of our runs", "",
                "mAP: relevant = shares at least one label; over the whole ranking and over the top k. A k larger "
                "than the gallery means the whole gallery (e.g. NDCG@500 on a 200-image test set is NDCG@200 for "
                "T2I).", "",
                tables.label_metrics_table(records), ""]
    out += _differences_markdown(summary, opts["reference_method"])
    out += _seeds_markdown(summary)
    if "machine_classes" in summary:
        out += provenance_markdown(summary["machine_classes"], summary.get("committed"))
    out += ["## Instance-level retrieval: Recall@K", ""]
    if has["r1_i2t"]:
        out += ["R@K in %, MedR 1-based. Published rows follow ours (papers/002 Tables 1-3, papers/003 Tables 1 "
                "and 3); rsum of published rows is computed here from their R@1/5/10.", "",
                tables.recall_tables(records), ""]
    else:
        out += ["No metrics file has instance-level results (R@K needs captions with their images).", ""]
    out += ["## Classification: Micro-F1 of the shared classifier (supplementary Table 1 layout)", ""]
    if has["f1_image"]:
        out += ["Each cell: **ours / published** (papers/001 Table 1); fractions in [0, 1].", "",
                tables.f1_table(records), ""]
        if any("f1_image_tuned" in r.values for r in records):
            out += ["Eq. 4 does not fix the scale of the outputs, so F1 at 0.5 is arbitrary. The same classifiers "
                    "three ways: at 0.5, at the threshold that maximises Micro-F1 on the validation split "
                    "(applied to test; never tuned on test), and top-k with k = the item's true label count.", "",
                    tables.f1_three_ways_table(records), ""]
    else:
        out += ["No metrics file has classification results (`f1_image` / `f1_text`: the evaluate stage "
                "writes them for methods with a label classifier).", ""]
    out += ["## Sensitivity to lambda (papers/001 Figure 3)", ""]
    if summary["lambda_curves"]:
        out += [f"NDCG against lambda for {', '.join(f'`{m}`' for m in lambda_methods)}; T2I solid, I2T dotted. "
                f"Points from {sweep_source}; data in `reports/lambda_sensitivity.json`.", "",
                "![lambda sensitivity](plots/lambda_sensitivity.png)", ""]
    else:
        out += [f"No lambda sweep found (points from {sweep_source}; a curve needs at least two lambda values "
                f"for one of {', '.join(f'`{m}`' for m in lambda_methods)}). To make one: "
                "queue experiments over the lambda grid (`dvc exp run --queue -S lambda=0.01`, ...; "
                "`dvc queue start`), then `dvc exp show --json > reports/experiments.json` and `dvc repro report`.", ""]
    out += convergence_markdown(summary.get("convergence", {}))
    out += ["## Training curves", ""]
    if summary["training_plots"]:
        out += [f"![training curves: {d}](plots/training_{d}.png)\n" for d in summary["training_plots"]]
    else:
        out += ["No training histories in `reports/training/`.", ""]
    for dataset, fits in sorted(summary["closed_form_fits"].items()):
        out += [f"Closed-form fits on {dataset} (one solve each, no epochs):", "",
                "| method | training pairs | objective | val NDCG | val rsum | seconds |", "|---|---|---|---|---|---|"]
        out += [f"| {f['method']} | {_num(f['pairs'], 0)} | {_num(f['objective'], 4)} | {_num(f['val_ndcg_ave'], 2)} | "
                f"{_num(f['val_rsum'], 2)} | {_num(f['seconds'], 1)} |" for f in fits] + [""]
    out += ["## Qualitative results", ""]
    if summary["qualitative_pages"]:
        out += ["Top-5 captions for image queries and top-3 images for caption queries (self-contained HTML):", ""]
        out += [f"- [{p}](qualitative/{p}.html)" for p in summary["qualitative_pages"]] + [""]
        for dataset, paths in sorted(summary.get("missing_images", {}).items()):
            out += [f"{dataset}: {len(paths)} image(s) of its pages are not on disk (e.g. `{sorted(paths)[0]}`); their "
                    "thumbnails are left out. Rankings, metrics and claims do not read images.", ""]
    else:
        out += ["No rankings in `reports/rankings/`.", ""]
    out += ["## Notes on the published numbers", ""] + [f"- {n}" for n in NOTES] + [""]
    return "\n".join(out)
