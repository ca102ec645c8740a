"""The train, evaluate and report stages of dvc.yaml, written from the method declarations and params.yaml.

Each method has its own stage pair (`train_<m>@<ds>`, `evaluate_<m>@<ds>`, one per dataset of
`datasets`) whose code dependency is its fingerprint file, `data/code/<command>_<m>.txt`: the hash of
every file of the import closure of its command and of its code and declaration modules
(`pipeline/code_deps.py`), written by the `code_fingerprints` stage. Editing one method's module changes
that method's fingerprints only, so `dvc repro` reruns that method. The closure is not listed in the
stages' `deps` themselves: DVC reads and rewrites the whole dvc.lock around every stage it runs, and 40
stages x 40 files made dvc.lock 24,000 lines and DVC's bookkeeping about 15 s per stage
(reports/benchmarks.md "DVC bookkeeping per stage"). The params a stage reads (`lambda` only for the
methods that read it, its own `methods.<m>` section: `stage_params`) are in the same file, as their values,
and not in the stage's `params`: listed there, DVC copied them into every stage's entry of dvc.lock, half of
its lines. `code_fingerprints` tracks the whole params.yaml, so any edit rewrites the files and DVC reruns
the stages whose file changed: `dvc exp run -S lambda=...` reruns the methods that read `lambda`. DVC's
templating cannot interpolate a list (`deps: ${...}`), so the stages are
written out here and `xmr check-params` refuses a dvc.yaml that differs from what this module writes
(`xmr dvc-yaml` rewrites it). Torch-free.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml

from pipeline.code_deps import as_deps, closure_paths

CODE_DIR = "data/code"
COMMANDS = ("train", "evaluate")
MARKER = ("  # --- Below: written by `xmr dvc-yaml` from pipeline/methods/ and params.yaml "
          "(run it after adding a method) ---\n")
CHECKED = "data/params_checked.txt"


class StaleDvcYaml(ValueError):
    """dvc.yaml's generated stages differ from the declarations and params.yaml."""


def run_methods(params: dict) -> list[str]:
    """The methods dvc.yaml trains: `run.methods` (null = every declared method) less `run.exclude`."""
    from pipeline.training.registry import METHODS

    chosen = params["run"]["methods"]
    chosen = list(METHODS) if chosen is None else chosen
    return [m for m in chosen if m not in params["run"]["exclude"]]


def code_files(method: str, command: str, root: Path) -> list[str]:
    """The project files `xmr <command> <ds> <method>` runs: the command's closure, the method's code
    module and its declaration module, with everything they import (sorted paths relative to `root`)."""
    from pipeline.methods import declaration_module
    from pipeline.training.registry import METHODS

    return closure_paths([f"stages.{command}", METHODS[method].module, declaration_module(method)], root)


def fingerprint_path(command: str, method: str) -> str:
    """The fingerprint file of `xmr <command> <ds> <method>`'s code: the stage's one code dependency."""
    return f"{CODE_DIR}/{command}_{method}.txt"


def stage_params(method: str, command: str) -> list[str]:
    """The params.yaml keys `xmr <command> <ds> <method>` reads: what its fingerprint file records the values
    of. Per dataset settings (`per_dataset`) reach the train stage through data/<ds>/settings.json."""
    from pipeline.training.registry import uses_lambda

    if command == "evaluate":
        return ["metrics", "train.device", "train.amp", "train.threads", "train.eval_batch_size",
                "train.portable_kernels"]
    return (["lambda"] if uses_lambda(method) else []) + ["train", "seed", "metrics", f"methods.{method}"]


def param_value(raw: dict, key: str):
    """The value at dotted `key` of the raw params file; None where it has no such key."""
    value = raw
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def fingerprint_text(method: str, command: str, root: Path, raw: dict) -> str:
    """One line `<md5>  <path>` per file of the code's closure (the format `md5sum -c` reads), after a
    comment naming the command, then one comment line per param it reads with its value in `raw` (the
    params file as written): it changes exactly when one of those files or values does."""
    lines = [f"# the files `xmr {command} <dataset> {method}` runs (pipeline/dvc_stages.py)"]
    for path in code_files(method, command, root):
        lines.append(f"{hashlib.md5((root / path).read_bytes()).hexdigest()}  {path}")
    lines.append("# the params.yaml values it reads")
    for key in stage_params(method, command):
        lines.append(f"# param {key}: {json.dumps(param_value(raw, key), sort_keys=True)}")
    return "\n".join(lines) + "\n"


def write_fingerprints(root: Path) -> list[Path]:
    """Every declared method's fingerprint files under `root`/data/code (each written atomically), from the
    code under `root` and its params.yaml; the folder holds those files only. Returns them."""
    from pipeline.io import atomic_output
    from pipeline.training.registry import METHODS

    params_file = root / "params.yaml"
    if not params_file.is_file():
        raise FileNotFoundError(f"{params_file}: not found; the code fingerprints record the params each stage "
                                f"reads (run in the project folder or pass --root)")
    raw = yaml.safe_load(params_file.read_text()) or {}
    wanted = {root / fingerprint_path(c, m): fingerprint_text(m, c, root, raw) for m in METHODS for c in COMMANDS}
    folder = root / CODE_DIR
    for stale in (folder.glob("*.txt") if folder.is_dir() else []):
        if stale not in wanted:
            stale.unlink()
    for path, text in wanted.items():
        if path.is_file() and path.read_text() == text:
            continue
        with atomic_output(path) as tmp:
            tmp.write_text(text)
    return sorted(wanted)


def check_params_deps(root: Path) -> list[str]:
    """The files `xmr check-params` runs: its closure and every declaration module (the params loader
    lists the package). Not dvc.yaml itself (DVC refuses it as a dependency): what it checks there changes
    only with params.yaml or a declaration."""
    from pipeline.methods import _modules

    return [*as_deps(closure_paths(["stages.check_params", *_modules()], root), root)]


def method_stages(method: str) -> dict:
    """`train_<method>` and `evaluate_<method>`, one stage per dataset (`foreach: ${datasets}`)."""
    data = [f"data/${{item}}/{name}" for name in ("table.parquet", "features.zarr", "text/tokens.parquet")]
    train = {
        "cmd": f"xmr train ${{item}} {method} --no-progress",
        "deps": [CHECKED, *data, "data/${item}/text/embeddings.npy", "data/${item}/settings.json",
                 fingerprint_path("train", method)],
        "outs": [{f"models/${{item}}/{method}": {"persist": True}}],
        "plots": [{f"reports/training/${{item}}/{method}.json": {"cache": False, "x": "epoch", "y": "loss"}}],
    }
    evaluate = {
        "cmd": f"xmr evaluate ${{item}} {method} --no-progress",
        "deps": [CHECKED, f"models/${{item}}/{method}", *data, fingerprint_path("evaluate", method)],
        "metrics": [{f"reports/metrics/${{item}}/{method}.json": {"cache": False}}],
        "outs": [f"reports/rankings/${{item}}/{method}.npz", f"reports/per_query/${{item}}/{method}.npz"],
    }
    return {f"train_{method}": {"foreach": "${datasets}", "do": train},
            f"evaluate_{method}": {"foreach": "${datasets}", "do": evaluate}}


def report_stage(methods: list[str], raw: dict) -> dict:
    """`report`: every metrics file, history and ranking; the recipe of each run method that has one."""
    sections = raw.get("methods") or {}
    recipes = [f"methods.{m}.recipe" for m in methods if "recipe" in (sections.get(m) or {})]
    return {"report": {
        "cmd": "xmr report",
        "deps": [CHECKED, "reports/metrics", "reports/training", "reports/rankings", "reports/per_query",
                 "reports/experiments.json", "pipeline/reporting", "pipeline/metrics/rankings.py",
                 "pipeline/metrics/per_query.py", "pipeline/metrics/bootstrap.py", "pipeline/project_paths.py",
                 "stages/report.py"],
        # datasets: the report names a dataset of the run without metrics (skipped by `make repro`)
        "params": ["lambda", "report", "datasets", "metrics.ndcg_k", "metrics.map_k", *recipes],
        "outs": [{"reports/results.md": {"cache": False}}, {"reports/claims.md": {"cache": False}},
                 {"reports/claims.json": {"cache": False}}, {"reports/qualitative": {"cache": False}}],
        "plots": [{"reports/plots": {"cache": False}},
                  {"reports/lambda_sensitivity.json": {"cache": False, "x": "lambda", "y": "ndcg_ave"}}],
    }}


def generated_text(params: dict, raw: dict, root: Path) -> str:
    """The generated part of dvc.yaml (after MARKER) for validated `params` and the raw params file."""
    methods = run_methods(params)
    stages: dict = {"check_params": {
        # First: every param through every stage's checks, so a bad value (`-S extract.num_boxes=0`) stops
        # here, before DVC removes any stage's outputs. Every stage depends on the marker (constant text).
        "cmd": "xmr check-params", "deps": check_params_deps(root), "params": [{"params.yaml": None}],
        "outs": [CHECKED]},
        # Every method's code and params fingerprints (stages/code_fingerprints.py), rewritten after any edit
        # under pipeline/ or stages/ or of params.yaml; a train/evaluate stage reruns only when its own file
        # changes.
        "code_fingerprints": {"cmd": "xmr code-fingerprints", "deps": ["pipeline", "stages"],
                              "params": [{"params.yaml": None}], "outs": [CODE_DIR]}}
    for method in methods:
        stages.update(method_stages(method))
    stages.update(report_stage(methods, raw))
    text = yaml.safe_dump(stages, sort_keys=False, width=120, default_flow_style=False)
    return "".join(f"  {line}\n" if line else "\n" for line in text.splitlines())


def _split(text: str, path: Path) -> tuple[str, str]:
    if MARKER not in text:
        raise StaleDvcYaml(f"{path}: no line '{MARKER.strip()}' (the generated stages start there)")
    head, _, tail = text.partition(MARKER)
    return head, tail


def write(dvc_yaml: Path, params_path: Path, check: bool = False) -> bool:
    """Rewrite the generated stages of `dvc_yaml` (or, with `check`, raise StaleDvcYaml if they differ).
    Returns whether the file changed."""
    from pipeline.params import load_params

    raw = yaml.safe_load(Path(params_path).read_text()) or {}
    text = dvc_yaml.read_text()
    head, tail = _split(text, dvc_yaml)
    want = generated_text(load_params(params_path), raw, dvc_yaml.resolve().parent)
    if tail == want:
        return False
    if check:
        raise StaleDvcYaml(f"{dvc_yaml}: its train/evaluate/report stages differ from the method declarations "
                           f"and {params_path} (run `xmr dvc-yaml`, then commit dvc.yaml)")
    from pipeline.io import atomic_output

    with atomic_output(dvc_yaml) as tmp:
        tmp.write_text(head + MARKER + want)
    return True
