"""A run meets what shells, schedulers and people do to it: a second run on its folder, a folder
of the user's, runs started in the same second, stop signals (SIGTERM, SIGHUP, Ctrl-C) at any
moment, a closed pipe, a crash's leftovers. Signals are sent to this very process where that is
enough (the run's handler is the same), to a child where the exit code a shell sees matters."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import REPO
from fastcifar import train
from fastcifar.checkpoint import load_checkpoint
from fastcifar.data import DataError, load_cifar10
from fastcifar.runfolder import RunFolder


def flags(data_dir, out, *extra):
    return ["--data-dir", str(data_dir), "--out", str(out), "--quiet", "--device", "cpu",
            "--no-figures", "--no-download", *extra]


TINY = ("--model", "cnn", "--epochs", "1", "--batch-size", "50", "--train-subset", "100",
        "--test-subset", "50")
# 400 images / 50 = 8 steps an epoch; per-step one-cycle and an EMA, so that a resume that is
# off by one step shows in the numbers
RESUMABLE = ("--recipe", "row2_cnn_aug_plateau", "--batch-size", "50", "--lr", "0.05",
             "--scheduler", "onecycle", "--ema-decay", "0.9", "--epochs", "2", "--seed", "3",
             "--test-subset", "50")


def history(run_dir):
    keys = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr")
    rows = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: json.loads(r)[k] for k in keys} for r in rows]


def same_weights(a, b):
    a, b = load_checkpoint(a / "last.pt"), load_checkpoint(b / "last.pt")
    for key, value in a["model"].items():
        torch.testing.assert_close(value, b["model"][key], rtol=0, atol=0)


def errors(text):
    return [line for line in text.splitlines() if "error:" in line]


def call(argv):
    """train.main's exit code, a parser.error's SystemExit included."""
    try:
        return train.main(argv)
    except SystemExit as exit_:
        return exit_.code


def child(argv, **kwargs):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "fastcifar.train", *argv], env=env,
                            text=True, **kwargs)


# ---- a run folder belongs to one run ---------------------------------------------------------

def test_a_held_folder_is_refused_naming_its_holder(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    held = RunFolder.open(out)  # as a live run holds it
    try:
        assert call(flags(data_dir, out, *TINY)) == 2
        err = capsys.readouterr().err
        assert len(errors(err)) == 1 and "in use by another run" in err
        assert f"pid {os.getpid()}" in err and "Traceback" not in err
        assert [p.name for p in out.iterdir()] == [".lock"]
    finally:
        held.close()
    assert not out.exists()  # the holder made it and left nothing to resume: gone
    assert train.main(flags(data_dir, out, *TINY)) == 0  # free again: taken


def test_two_runs_started_together_on_one_folder(data_dir, tmp_path):
    out = tmp_path / "run"
    procs = [child(flags(data_dir, out, *TINY), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    results = [(p.wait(timeout=240), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, _, err in results if code == 2)
    assert len(errors(refused)) == 1 and "Traceback" not in refused
    assert "in use by another run" in refused or "already holds a run" in refused
    winner = next(stdout for code, stdout, _ in results if code == 0)
    assert f"-> {out}" in winner and (out / "summary.json").is_file()


def test_default_names_never_collide(data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("fastcifar.runfolder.time.strftime", lambda fmt: "20260101-000000")
    argv = [*TINY, "--data-dir", str(data_dir), "--quiet", "--device", "cpu", "--no-figures"]
    assert train.main(argv) == 0 and train.main(argv) == 0
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert runs == ["row1_cnn-20260101-000000", "row1_cnn-20260101-000000-2"]
    assert all((tmp_path / "runs" / r / "summary.json").is_file() for r in runs)


def test_a_folder_that_is_not_a_run_is_refused(data_dir, tmp_path, capsys):
    out = tmp_path / "project"
    out.mkdir()
    (out / "config.json").write_text("{\"mine\": true}\n")
    (out / "notes.txt").write_text("my notes\n")
    assert call(flags(data_dir, out, *TINY)) == 2
    err = capsys.readouterr().err
    assert len(errors(err)) == 1 and "is a folder that is not a run" in err and "notes.txt" in err
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "notes.txt"]
    assert (out / "config.json").read_text() == "{\"mine\": true}\n"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert train.main(flags(data_dir, empty, *TINY)) == 0  # an empty folder is fine
    assert (empty / "summary.json").is_file()


def test_a_crashed_writes_temp_files_are_removed(data_dir, tmp_path):
    out = tmp_path / "run"
    assert train.main(flags(data_dir, out, *TINY, "--epochs", "2", "--stop-after", "1")) == 0
    litter = [".last.pt.x1y2z3.tmp", ".best.pt.abc.tmp", "config.json.tmp",
              "metrics.jsonl.tmp", ".write-check.q1w2"]
    for name in litter:
        (out / name).write_bytes(b"\0" * 1000)
    assert train.main(["--resume", str(out), "--quiet", "--device", "cpu"]) == 0
    assert not [name for name in litter if (out / name).exists()]
    assert (out / "summary.json").is_file()


def test_a_failed_download_leaves_no_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTCIFAR_DATA_URL", (tmp_path / "nowhere.tar.gz").as_uri())
    with pytest.raises(DataError, match="could not download"):
        load_cifar10(tmp_path / "a" / "b" / "c", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# ---- stop signals ----------------------------------------------------------------------------

def _signal_at_call(monkeypatch, sig, call):
    """Send ``sig`` to this process from inside training step ``call`` (as a scheduler would
    at any moment): the run must finish that step and checkpoint it."""
    real = torch.nn.functional.cross_entropy
    calls = {"n": 0}

    def loss(logits, y, **kw):
        calls["n"] += 1
        if calls["n"] == call:
            os.kill(os.getpid(), sig)
        return real(logits, y, **kw)

    monkeypatch.setattr("fastcifar.engine.F.cross_entropy", loss)


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129),
                                       (signal.SIGINT, 130)])
def test_a_signal_checkpoints_the_step_and_resumes_bitwise(data_dir, tmp_path, monkeypatch,
                                                           capsys, sig, code):
    straight = tmp_path / "straight"
    assert train.main(flags(data_dir, straight, *RESUMABLE)) == 0
    split = tmp_path / "split"
    _signal_at_call(monkeypatch, sig, 8 + 1 + 3)  # epoch 1 (8 steps), its evaluation, step 3
    capsys.readouterr()
    assert train.main(flags(data_dir, split, *RESUMABLE)) == code
    out = capsys.readouterr().out
    state = load_checkpoint(split / "last.pt")
    assert (state["epoch"], state["step"]) == (1, 3)  # the step the signal landed in
    name = "Ctrl-C" if sig == signal.SIGINT else sig.name
    assert f"interrupted by {name}; {split / 'last.pt'} holds epoch 1, and 3 steps of epoch 2" \
        in out
    assert f"resume with: python -m fastcifar.train --resume {split}" in out
    monkeypatch.undo()
    assert signal.getsignal(sig) in (signal.SIG_DFL, signal.default_int_handler)  # restored
    assert train.main(["--resume", str(split), "--quiet", "--device", "cpu"]) == 0
    assert history(split) == history(straight)
    same_weights(split, straight)


def test_sigterm_from_outside_mid_epoch_then_resume_matches(data_dir, tmp_path):
    """The scheduler's way: SIGTERM from another process while the run trains."""
    common = ("--model", "cnn", "--batch-size", "10", "--epochs", "2", "--test-subset", "20",
              "--lr", "0.05", "--seed", "1")
    straight = tmp_path / "straight"
    assert train.main(flags(data_dir, straight, *common)) == 0
    split = tmp_path / "split"
    log = tmp_path / "stdout.txt"
    with open(log, "w") as stdout:
        argv = [a for a in flags(data_dir, split, *common) if a != "--quiet"]
        proc = child(argv, stdout=stdout, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while "estimate:" not in log.read_text():  # printed after step 4 of epoch 1 (of 40)
            assert proc.poll() is None and time.time() < deadline, log.read_text()
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 143
    printed = log.read_text()
    state = load_checkpoint(split / "last.pt")
    assert state["epoch"] * 40 + state.get("step", 0) >= 4
    assert "interrupted by SIGTERM" in printed and f"--resume {split}" in printed
    assert train.main(["--resume", str(split), "--quiet", "--device", "cpu"]) == 0
    assert history(split) == history(straight)
    same_weights(split, straight)


def test_a_signal_during_start_up_leaves_no_folder(data_dir, tmp_path, monkeypatch, capsys):
    def build(*args, **kwargs):  # the model's build (a compile, minutes on a GPU): late start-up
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)  # the handler raises here

    monkeypatch.setattr("fastcifar.run.TrainState.build", build)
    out = tmp_path / "run"
    assert train.main(flags(data_dir, out, *TINY)) == 143
    assert "interrupted by SIGTERM during start-up; no run folder is left" in \
        capsys.readouterr().out
    assert not out.exists()


def test_a_signal_during_the_final_evaluation_leaves_a_resumable_run(data_dir, tmp_path,
                                                                     monkeypatch, capsys):
    from fastcifar import run

    real = run.summarize

    def summarize(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(run, "summarize", summarize)
    out = tmp_path / "run"
    assert train.main(flags(data_dir, out, *TINY)) == 143
    assert "holds epoch 1; resume with" in capsys.readouterr().out
    assert not (out / "summary.json").exists() and (out / "last.pt").is_file()
    monkeypatch.undo()
    assert train.main(["--resume", str(out), "--quiet", "--device", "cpu"]) == 0
    assert json.loads((out / "summary.json").read_text())["epochs"] == 1


# ---- a closed pipe ---------------------------------------------------------------------------

def test_a_closed_pipe_stops_nothing(data_dir, tmp_path):
    """``python -m fastcifar.train ... | head -1``, stderr closed too (a gone terminal)."""
    out = tmp_path / "run"
    argv = [a for a in flags(data_dir, out, *TINY) if a != "--quiet"]
    proc = child(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # before the child prints anything
    proc.stderr.close()
    assert proc.wait(timeout=240) == 0
    assert (out / "summary.json").is_file() and (out / "last.pt").is_file()


# ---- sweeps ----------------------------------------------------------------------------------

def sweep_argv(data_dir, out, *extra):
    return ["--seeds", "0", "1", "--jobs", "2", "--out", str(out), "--", "--data-dir",
            str(data_dir), "--model", "cnn", "--epochs", "2", "--batch-size", "50",
            "--train-subset", "100", "--test-subset", "50", "--device", "cpu", "--no-figures",
            *extra]


def test_a_sweep_rerun_continues_its_unfinished_runs(data_dir, tmp_path, monkeypatch, capsys):
    from fastcifar import sweep

    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "sweep"
    assert sweep.main(sweep_argv(data_dir, out, "--stop-after", "1")) == 0  # a clean partial
    printed = capsys.readouterr().out
    assert "| base | 0 (2 unfinished) |" in printed and "2 stopped; continue with:" in printed
    runs = json.loads((out / "sweep.json").read_text())["runs"]
    assert [r["status"] for r in runs] == ["stopped", "stopped"]
    assert sweep.main(sweep_argv(data_dir, out)) == 0  # the same sweep again: continued
    printed = capsys.readouterr().out
    assert printed.count("--resume") == 2 and "| base | 2 |" in printed
    for seed in (0, 1):
        assert [r["epoch"] for r in history(out / f"base_seed{seed}")] == [1, 2]
    assert sweep.main(sweep_argv(data_dir, out)) == 0  # finished: read, not run
    assert capsys.readouterr().out.count("done before") == 2


@pytest.mark.parametrize("argv, message", [
    (["--seeds", "0", "0"], "--seeds repeats 0; give each seed once"),
    (["--grid", "lr=0.1", "--grid", "lr=0.2"], "--grid lr is given more than once"),
    (["--grid", "lr=0.1,0.1"], "a value is empty or repeated"),
])
def test_a_sweep_refuses_repeated_seeds_and_keys(argv, message, tmp_path, capsys):
    from fastcifar import sweep

    with pytest.raises(SystemExit) as exit_:
        sweep.main([*argv, "--out", str(tmp_path / "s"), "--", "--model", "cnn"])
    assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def _alive(marker: str) -> list[int]:
    """Processes whose command line names ``marker`` (a run folder: this test's alone)."""
    pids = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    pids.append(int(entry))
        except (OSError, ValueError):
            continue
    return pids


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_a_stopped_sweep_leaves_no_child_running(data_dir, tmp_path, sig):
    """SIGTERM or Ctrl-C to the sweep reaches its child, which checkpoints and exits; a sweep
    killed outright (kill -9) is noticed by the child, which stops as on SIGTERM."""
    out = tmp_path / "sweep"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    argv = ["--seeds", "0", "--out", str(out), "--", "--data-dir", str(data_dir), "--model",
            "cnn", "--epochs", "100", "--batch-size", "10", "--test-subset", "20", "--device",
            "cpu", "--no-figures"]
    proc = subprocess.Popen([sys.executable, "-m", "fastcifar.sweep", *argv], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run = out / "base_seed0"
    deadline = time.time() + 120
    while not (run / "last.pt").exists():  # the child is training (epoch 1 saved)
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(sig)
    printed = proc.communicate(timeout=120)[0]
    deadline = time.time() + 30
    while _alive(str(run)):
        assert time.time() < deadline, "the sweep's child outlived it"
        time.sleep(0.2)
    log = (run / "train.log").read_text()
    name = "Ctrl-C" if sig == signal.SIGINT else "SIGTERM"
    assert f"interrupted by {name}" in log and f"--resume {run}" in log
    if sig != signal.SIGKILL:
        assert proc.returncode == 128 + sig and "Traceback" not in printed
        assert f"stopped by {name}: 1 interrupted; continue with:" in printed
    assert load_checkpoint(run / "last.pt")["epoch"] >= 1


# ---- one rule for resume ---------------------------------------------------------------------

def test_resume_never_rewrites_what_ran(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert train.main(flags(data_dir, out, *TINY, "--epochs", "2")) == 0
    config = (out / "config.json").read_bytes()
    capsys.readouterr()
    assert call(["--resume", str(out), "--epochs", "1", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert len(errors(err)) == 1 and "--epochs 1 is fewer than the 2 epochs" in err
    assert (out / "config.json").read_bytes() == config


def test_no_figures_is_remembered(data_dir, tmp_path):
    out = tmp_path / "run"
    assert train.main(flags(data_dir, out, *TINY, "--epochs", "2", "--stop-after", "1")) == 0
    assert train.main(["--resume", str(out), "--quiet", "--device", "cpu"]) == 0  # no flag
    assert (out / "summary.json").is_file() and not (out / "curves.png").exists()
    assert json.loads((out / "config.json").read_text())["figures"] is False


def test_evaluate_reads_the_runs_data_folder(data_dir, tmp_path, monkeypatch, capsys):
    from fastcifar import evaluate

    out = tmp_path / "run"
    assert train.main(flags(data_dir, out, *TINY)) == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # where the hint after a corrupt last.pt may be run from
    monkeypatch.setenv("FASTCIFAR_DATA_URL", (tmp_path / "nowhere.tar.gz").as_uri())
    assert evaluate.main([str(out), "--device", "cpu"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    assert list(elsewhere.iterdir()) == []  # no ./data download attempt


def test_evaluate_refuses_weights_of_another_model(data_dir, tmp_path, capsys):
    from fastcifar import evaluate
    from fastcifar.checkpoint import save_checkpoint

    out = tmp_path / "run"
    assert train.main(flags(data_dir, out, *TINY)) == 0
    state = load_checkpoint(out / "best.pt")
    state["config"]["recipe"]["model"] = "resnet_final"  # a config.json of another run
    save_checkpoint(state, tmp_path / "mixed.pt")
    capsys.readouterr()
    assert evaluate.main(["--checkpoint", str(tmp_path / "mixed.pt"), "--device", "cpu",
                          "--data-dir", str(data_dir)]) == 2
    err = capsys.readouterr().err
    assert len(errors(err)) == 1 and "do not fit its recorded model resnet_final" in err
    assert "Traceback" not in err and len(err) < 600


def test_a_sweep_into_a_closed_pipe_finishes(data_dir, tmp_path):
    """``python -m fastcifar.sweep ... | head -1``: the sweep and its run go on to the end."""
    out = tmp_path / "sweep"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    argv = ["--seeds", "0", "--out", str(out), "--", "--data-dir", str(data_dir), *TINY,
            "--device", "cpu", "--no-figures"]
    proc = subprocess.Popen([sys.executable, "-m", "fastcifar.sweep", *argv], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    proc.stderr.close()
    assert proc.wait(timeout=240) == 0
    assert (out / "sweep.json").is_file() and (out / "base_seed0" / "summary.json").is_file()


def test_a_continued_sweep_run_takes_only_the_flags_resume_honours():
    from fastcifar import sweep

    argv = ["--model", "cnn", "--epochs", "3", "--seed", "1", "--amp", "bf16", "--data-dir", "D",
            "--no-download", "--no-figures", "--stop-after", "1", "--sync-bn", "--lr", "0.1"]
    flags = sweep.resume_flags(argv)
    # the run's own settings (seed, amp, the recipe) are in its config.json: never passed again
    assert not {"--seed", "--amp", "--lr", "--model"} & set(flags)
    args = train.get_args_parser().parse_args(["--resume", "R", *flags])
    assert (args.epochs, args.data_dir, args.download, args.figures, args.stop_after,
            args.sync_bn) == (3, "D", False, False, 1, True)
    assert sweep.resume_flags(["--model", "cnn"]) == []  # nothing named, nothing passed
