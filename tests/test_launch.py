"""fastcifar.launch: the one way a sweep, the Table 1 script and the benchmarks start a training
child and read back its run folder."""

import json
import os
import sys

from fastcifar import launch
from fastcifar.lifecycle import PARENT_ENV


def test_a_folder_with_a_checkpoint_is_continued_else_started(tmp_path):
    start, resume = ["--recipe", "fast", "--seed", "3"], ["--epochs", "9"]
    assert launch.start_or_continue(tmp_path, start, resume) == [*start, "--out", str(tmp_path)]
    (tmp_path / "last.pt").write_bytes(b"")
    assert launch.start_or_continue(tmp_path, start, resume) == \
        ["--resume", str(tmp_path), "--epochs", "9"]


def test_the_command_and_environment_of_a_child():
    assert launch.train_command(["--recipe", "fast"], ["-m", "torch.distributed.run"]) == \
        [sys.executable, "-m", "torch.distributed.run", "-m", "fastcifar.train", "--recipe", "fast"]
    env = launch.child_env({"KEEP": "1"}, CUDA_VISIBLE_DEVICES="2")
    assert env == {"KEEP": "1", "CUDA_VISIBLE_DEVICES": "2", PARENT_ENV: str(os.getpid())}


def _write_run(folder, summary=None):
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"init_seconds": 1.5}))
    rows = [{"epoch": 1, "train_seconds_total": 4.0, "eval_seconds": 0.5, "test_acc": 40.0},
            {"epoch": 2, "train_seconds_total": 8.0, "eval_seconds": 0.25, "test_acc": 60.0}]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    if summary is not None:
        (folder / "summary.json").write_text(json.dumps(summary))


def test_a_run_folder_read_back(tmp_path):
    _write_run(tmp_path / "stopped")
    stopped = launch.read_run(tmp_path / "stopped")
    assert stopped.summary is None and [h["epoch"] for h in stopped.history] == [1, 2]
    assert stopped.last["test_acc"] == 60.0
    # init, all the training, and the last epoch's evaluation only
    assert stopped.race_seconds() == 1.5 + 8.0 + 0.25
    _write_run(tmp_path / "finished", {"final": {"test_acc": 60.0}})
    assert launch.read_run(tmp_path / "finished").summary == {"final": {"test_acc": 60.0}}


def test_a_childs_exit_code_comes_back(tmp_path):
    assert launch.train_in_child(["--help"], capture_output=True) == 0
    assert launch.train_in_child(["--no-such-flag"], capture_output=True) == 2
