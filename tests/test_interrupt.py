"""Ctrl-C or SIGTERM in the middle of a stage's store reads (also those on threads): one line, exit code
130, no traceback."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_stage_stops_with_one_line(tmp_path, sig):
    store = tmp_path / "features.zarr"
    script = tmp_path / "stage.py"
    script.write_text(textwrap.dedent(f"""
        import numpy as np
        import typer
        from pipeline.detection.store import FeatureStore, FeatureStoreWriter
        from stages.common import stage_errors, stop_on_sigterm

        n, k, d = 512, 36, 256
        w = FeatureStoreWriter({str(store)!r}, n_rows=n, num_boxes=k, feature_dim=d, dtype="float16", chunk_rows=64,
                               signature={{"test": 1}}, attrs={{"num_classes": 2, "class_names": ["a", "b"]}})
        rng = np.random.default_rng(0)
        for c in range(w.num_chunks):
            m = len(w.chunk_rows_range(c))
            w.write_chunk(c, {{"features": rng.normal(size=(m, k, d)).astype(np.float16),
                              "boxes": np.zeros((m, k, 4), np.float32), "positions": np.zeros((m, k, 5), np.float32),
                              "scores": np.zeros((m, k), np.float32), "classes": np.zeros((m, k), np.int32),
                              "image_size": np.ones((m, 2), np.int32), "valid": np.ones(m, bool)}}, {{}})
        w.finalize()

        @stage_errors
        def main():
            store = FeatureStore({str(store)!r})
            print("reading", flush=True)
            while True:
                store.read(np.arange(n))
                store.read(np.arange(0, n, 16), arrays=("features",))  # scattered: chunks read on threads

        stop_on_sigterm()
        app = typer.Typer()
        app.command()(main)
        app()
    """))
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.pop("XMR_DEBUG", None)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout.readline().strip() == "reading"
    time.sleep(1.0)
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("interrupted: stopped here"), err
