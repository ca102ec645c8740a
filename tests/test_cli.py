"""The `xmr` command and the DVC wiring of the download and prepare stages."""
from conftest import REPO
from tiny_project import BIN, create_project, dvc, edit_params, run


def test_help_explains_every_stage():
    out = run([BIN / "xmr", "--help"], REPO).stdout
    assert "download" in out and "prepare" in out
    out = run([BIN / "xmr", "prepare", "--help"], REPO).stdout
    assert "table.parquet" in out and "images_without_labels" in out


def test_bad_param_is_a_one_line_error(tmp_path):
    (tmp_path / "params.yaml").write_text("lambda: 0.1\nprepare:\n  max_captionz: 5\n")
    proc = run([BIN / "xmr", "prepare", "shapes", "--params", "params.yaml"], tmp_path, check=False)
    assert proc.returncode == 2
    assert "unknown parameter 'prepare.max_captionz'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_dvc_repro_runs_prepare_then_has_nothing_to_do(tmp_path):
    def shapes_only(p):  # the copy has no ../shared beside it, so coco_mini is left out
        p["datasets"] = ["shapes"]
        p["data"]["shapes"].update(n_images=20, n_val=4, n_test=4)

    project = create_project(tmp_path / "p", shapes_only)
    first = dvc(["repro", "prepare"], project).stdout
    assert "Running stage 'download@shapes'" in first and "Running stage 'prepare@shapes'" in first
    assert (project / "data" / "shapes" / "table.parquet").is_file()
    second = dvc(["repro", "prepare"], project).stdout
    assert "Running stage" not in second
    # Changing a prepare param re-runs prepare only, not the generator.
    edit_params(project, lambda p: p["prepare"].update(max_captions=3))
    third = dvc(["repro", "prepare"], project).stdout
    assert "Running stage 'prepare@shapes'" in third and "Running stage 'download@shapes'" not in third
