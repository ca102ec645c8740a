"""bench/main_job.py's reading of a stamped `make repro` log: the total, the install and each stage's seconds
(structure and arithmetic on a written log, never a timing of this machine)."""
from __future__ import annotations

from bench import main_job

LOG = """0.0 python3 -m venv .venv
40.5 make repro: 3 tasks, 2 at a time
43.1 [shared] Running stage 'check_params':
51.0 [shared] Updating lock file 'dvc.lock'
52.5 [shapes] Running stage 'download@shapes':
58.0 [shapes] Running stage 'train_detector@shapes':
60.0 [shapes/ss] Running stage 'train_ss@shapes':
170.0 [shapes/ss] Running stage 'evaluate_ss@shapes':
175.5 [shapes/ss] Updating lock file 'dvc.lock'
198.0 [shapes] Updating lock file 'dvc.lock'
930.0 Running stage 'report':
936.1 [make] exit 0
""".splitlines()


def test_stage_seconds_run_from_a_stage_line_to_the_next_of_its_task():
    total, install, rows = main_job.stage_seconds(LOG)
    assert (total, install) == (936.1, 43.1)
    seconds = dict(rows)
    assert seconds["check_params"] == 51.0 - 43.1
    assert seconds["download@shapes"] == 58.0 - 52.5
    assert seconds["train_detector@shapes"] == 198.0 - 58.0  # its task's last line ends it
    assert seconds["train_ss@shapes"] == 170.0 - 60.0
    assert seconds["evaluate_ss@shapes"] == 175.5 - 170.0


def test_the_total_is_whole_minutes_and_seconds():
    text = main_job.table(*main_job.stage_seconds(LOG))
    assert text.splitlines()[0] == "Total 15 min 36 s; install (until the first stage) 43 s."
    assert "| shapes | train | 1 | 110 |" in text and "| shapes | evaluate | 1 | 6 |" in text
