"""Each method's train/evaluate stages depend on exactly the files its code imports (issue 25 item 2),
through the method's code fingerprint file: nothing missing (a stale result would go unnoticed), no other
method's module (a needless rerun); and editing one method's module makes DVC rerun that method only."""
import json
import modulefinder
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from pipeline.dvc_stages import COMMANDS, code_files, fingerprint_path, stage_params, write, write_fingerprints
from pipeline.methods import declaration_module
from pipeline.training.registry import METHODS, USES_LAMBDA
from tiny_project import BIN, run

STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def _module_path(module: str) -> str:
    base = module.replace(".", "/")
    return f"{base}.py" if (REPO / f"{base}.py").is_file() else f"{base}/__init__.py"


def _imported_files(modules: list[str]) -> set[str]:
    """The project files the modules import, found by the standard library's modulefinder (not by the
    generator's own `ast` walk), restricted to this repository."""
    finder = modulefinder.ModuleFinder(path=[str(REPO)])
    for module in modules:
        finder.import_hook(module)
    files = {Path(m.__file__).resolve() for m in finder.modules.values() if m.__file__}
    return {f.relative_to(REPO).as_posix() for f in files if f.is_relative_to(REPO)}


def test_dvc_yaml_is_what_the_declarations_and_params_give():
    write(REPO / "dvc.yaml", REPO / "params.yaml", check=True)  # raises naming `xmr dvc-yaml` when stale


@pytest.mark.parametrize("command", ["train", "evaluate"])
@pytest.mark.parametrize("name", sorted(METHODS))
def test_a_methods_stage_depends_on_exactly_its_import_closure(name, command):
    stage = f"{command}_{name}"
    assert stage in STAGES, f"dvc.yaml has no stage {stage}: run `xmr dvc-yaml` (or method '{name}' is excluded)"
    listed = STAGES[stage]["do"]["deps"]
    assert fingerprint_path(command, name) in listed, f"{stage} does not depend on its code fingerprint"
    assert not [d for d in listed if d.startswith(("pipeline", "stages"))], f"{stage} lists code files itself"
    deps = set(code_files(name, command, REPO))
    wanted = _imported_files([f"stages.{command}", METHODS[name].module, declaration_module(name)])
    assert not wanted - deps, f"{stage} misses {sorted(wanted - deps)}, which its code imports: run `xmr dvc-yaml`"
    assert not deps - wanted, f"{stage} lists {sorted(deps - wanted)}, which its code does not import"
    for other, entry in METHODS.items():
        if entry.module != METHODS[name].module:
            assert _module_path(entry.module) not in deps, f"{stage} depends on method '{other}''s module"
        if declaration_module(other) != declaration_module(name):
            assert _module_path(declaration_module(other)) not in deps, f"{stage} depends on '{other}''s declaration"


def test_a_fingerprint_changes_exactly_when_a_file_of_its_closure_does(tmp_path):
    """The fingerprint files are what DVC compares: an edit to SCAN's module changes SCAN's six files and no
    other, an edit to a file every method runs changes them all, and rewriting without an edit changes none."""
    for name in ("pipeline", "stages"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    read = lambda: {p.name: p.read_text() for p in sorted((tmp_path / "data" / "code").glob("*.txt"))}  # noqa: E731
    write_fingerprints(tmp_path)
    before = read()
    assert len(before) == len(METHODS) * len(COMMANDS)
    line = next(x for x in before["train_ss.txt"].splitlines() if x.endswith("pipeline/models/semantic_sharing.py"))
    assert len(line.split()[0]) == 32
    write_fingerprints(tmp_path)
    assert read() == before
    scan = tmp_path / "pipeline/models/scan.py"
    scan.write_text(scan.read_text() + "# an edit\n")
    write_fingerprints(tmp_path)
    changed = {name for name, text in read().items() if text != before[name]}
    assert changed == {f"{c}_{m}.txt" for c in COMMANDS for m in ("scan_i2t", "scan_t2i", "scan_consistency")}
    io = tmp_path / "pipeline/io.py"
    io.write_text(io.read_text() + "# an edit\n")
    write_fingerprints(tmp_path)
    assert all(text != before[name] for name, text in read().items())


def _edit_params(path: Path, edit) -> None:
    raw = yaml.safe_load(path.read_text())
    edit(raw)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


def test_a_fingerprint_records_the_params_its_stage_reads(tmp_path):
    """The params each stage reads are in its fingerprint file, as values: editing `lambda` changes the train
    files of the methods that read it, a method's own section its train file only, `metrics` every file,
    a key no stage reads none. No train or evaluate stage lists params itself (DVC would copy them into
    every stage's entry of dvc.lock)."""
    for name in ("pipeline", "stages"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    params = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params)
    read = lambda: {p.stem: p.read_text() for p in sorted((tmp_path / "data" / "code").glob("*.txt"))}  # noqa: E731
    write_fingerprints(tmp_path)
    before = read()
    assert "# param lambda: 0.1" in before["train_ss"].splitlines() and "lambda" not in before["train_cca"]

    def changed_by(edit) -> set[str]:
        _edit_params(params, edit)
        write_fingerprints(tmp_path)
        now = read()
        shutil.copy(REPO / "params.yaml", params)
        write_fingerprints(tmp_path)
        return {name for name, text in now.items() if text != before[name]}

    assert changed_by(lambda raw: raw.update({"lambda": 0.5})) == {f"train_{m}" for m in USES_LAMBDA}
    assert changed_by(lambda raw: raw["methods"]["ss"].update({"d_model": 32})) == {"train_ss"}
    assert changed_by(lambda raw: raw["metrics"].update({"ndcg_k": 100})) == set(before)
    assert changed_by(lambda raw: raw["train"].update({"eval_batch_size": 128})) == set(before)
    assert changed_by(lambda raw: raw["report"].update({"bootstrap_seed": 3})) == set()
    for name in (f"{c}_{m}" for m in METHODS for c in COMMANDS):
        assert "params" not in STAGES[name]["do"], f"{name} lists params: run `xmr dvc-yaml`"
    assert STAGES["code_fingerprints"]["params"] == [{"params.yaml": None}]  # any edit rewrites the files
    (tmp_path / "params.yaml").unlink()
    with pytest.raises(FileNotFoundError, match="params.yaml: not found"):
        write_fingerprints(tmp_path)


def test_only_the_methods_that_read_lambda_track_it():
    tracking = {f"{c}_{m}" for m in METHODS for c in COMMANDS if "lambda" in stage_params(m, c)}
    tracking |= {s for s, body in STAGES.items() if "lambda" in body.get("do", body).get("params", [])}
    assert tracking == {f"train_{m}" for m in USES_LAMBDA} | {"report"}, tracking


DATASETS = yaml.safe_load((REPO / "params.yaml").read_text())["datasets"]


def _fake_workspace(project: Path) -> None:
    """Every dependency and output of every stage on every dataset, as placeholder files, so that
    `dvc commit` records a finished run without training anything."""
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    for body, dataset in ((b, d) for b in stages.values() for d in DATASETS):
        body = body.get("do", body)
        for entry in (body.get(k, []) for k in ("deps", "outs", "metrics", "plots")):
            for item in entry:
                path = project / (next(iter(item)) if isinstance(item, dict) else item).replace("${item}", dataset)
                if path.exists():
                    continue
                if path.suffix in ("", ".zarr"):
                    path.mkdir(parents=True)
                    (path / "placeholder").write_text("x")
                else:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text("[]" if path.suffix == ".json" else "x")


@pytest.fixture(scope="module")
def committed(tmp_path_factory):
    project = tmp_path_factory.mktemp("stages") / "p"
    project.mkdir()
    for name in ("dvc.yaml", "params.yaml", ".gitignore"):
        shutil.copy(REPO / name, project / name)
    for name in ("pipeline", "stages", "splits"):
        shutil.copytree(REPO / name, project / name, ignore=shutil.ignore_patterns("__pycache__"))
    run(["git", "init", "-q"], project)
    run([BIN / "dvc", "init", "-q"], project)
    _fake_workspace(project)
    for shared in ("check-params", "code-fingerprints"):  # the real outputs of the two shared stages
        run([BIN / "xmr", shared], project)
    run([BIN / "dvc", "commit", "-f", "-q"], project)
    assert json.loads(run([BIN / "dvc", "status", "--json"], project).stdout) == {}
    return project


def _status(project: Path) -> set[str]:
    return set(json.loads(run([BIN / "dvc", "status", "--json"], project).stdout))


def test_editing_one_methods_module_reruns_only_that_method(committed):
    """One real DVC check (every method's closure is checked above without DVC): SCAN's module. DVC first
    sees the code folder changed (the fingerprints stage), and once that stage has run, SCAN's stages only."""
    path = committed / "pipeline/models/scan.py"
    original = path.read_text()
    try:
        path.write_text(original + "# an edit\n")
        assert _status(committed) == {"code_fingerprints"}
        run([BIN / "dvc", "repro", "--single-item", "code_fingerprints"], committed)
        changed = _status(committed)
    finally:
        path.write_text(original)
    methods = ("scan_i2t", "scan_t2i", "scan_consistency")
    assert changed == {f"{c}_{m}@{d}" for m in methods for c in ("train", "evaluate") for d in DATASETS}, changed


def test_editing_lambda_reruns_only_the_methods_that_read_it(committed):
    """What `dvc exp run -S lambda=...` does, checked with DVC: the new value reaches the fingerprint files
    through the `code_fingerprints` stage (it tracks the whole params.yaml), and then the train stages of
    the methods that read `lambda` rerun, and the report (it tracks `lambda` itself); nothing else."""
    run([BIN / "dvc", "repro", "--single-item", "code_fingerprints"], committed)  # after the test above
    run([BIN / "dvc", "commit", "-f", "-q"], committed)
    assert _status(committed) == set()
    path = committed / "params.yaml"
    original = path.read_text()
    assert "\nlambda: 0.1\n" in original
    try:
        path.write_text(original.replace("\nlambda: 0.1\n", "\nlambda: 0.5\n", 1))
        assert _status(committed) == {"check_params", "code_fingerprints", "report"}
        run([BIN / "dvc", "repro", "--single-item", "check_params", "code_fingerprints"], committed)
        changed = _status(committed)
    finally:
        path.write_text(original)
    assert changed == {f"train_{m}@{d}" for m in USES_LAMBDA for d in DATASETS} | {"report"}, changed
