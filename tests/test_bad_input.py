"""Every bad input the CLI knows of, in one table: each ends in exit 2 and exactly one
``error:`` line naming the problem and the fix, never a traceback, and leaves an existing run
folder byte for byte as it was. The commands run in this process (``main(argv)``), so that a
full disk can be simulated; an exception escaping ``main`` is printed as the traceback a user
would see. ``python -m fastcifar.data | head`` needs a real pipe and runs as a subprocess."""

import errno
import os
import shutil
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import torch

from conftest import REPO
from fastcifar import train
from fastcifar.data import __main__ as data_cli
from fastcifar.data.synthetic import write_synthetic_cifar


@pytest.fixture(scope="module")
def stopped_run(data_dir, tmp_path_factory):
    """A run stopped after epoch 1 of 2: last.pt and best.pt hold epoch 1."""
    out = tmp_path_factory.mktemp("runs") / "stopped"
    assert train.main(["--model", "cnn", "--epochs", "2", "--stop-after", "1", "--batch-size",
                       "50", "--train-subset", "100", "--test-subset", "50",
                       *common(data_dir, out)]) == 0
    return out


def common(data_dir, out):
    return ["--data-dir", str(data_dir), "--out", str(out), "--quiet", "--device", "cpu",
            "--no-figures", "--no-download"]


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def call(main, argv) -> object:
    """``main(argv)``'s exit code as a shell would see it: a SystemExit with a message is
    printed and is exit 1; an escaping exception is printed as a traceback."""
    try:
        return main(argv)
    except SystemExit as exit_:
        if isinstance(exit_.code, str):
            print(exit_.code, file=sys.stderr)
            return 1
        return exit_.code
    except Exception:  # what the user would see: the point of this table is that none escape
        traceback.print_exc()
        return "traceback"


def _cuda_missing(ctx):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    return ["--model", "cnn", *ctx.new, "--device", "cuda"]


def _corrupt(how):
    def setup(ctx):
        last = ctx.run / "last.pt"
        data = last.read_bytes()
        last.write_bytes(data[: len(data) // 2] if how == "truncated" else b"\x80\x02garbage")
        return ["--resume", str(ctx.run), "--quiet", "--device", "cpu", "--data-dir",
                str(ctx.data)]
    return setup


def _full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _disk_full(ctx):
    """Every write fails: the resumed run cannot even rewrite config.json."""
    ctx.monkeypatch.setattr("fastcifar.checkpoint.os.fsync", _full)
    ctx.monkeypatch.setattr("pathlib.Path.write_text", _full)
    return _disk_full_at_checkpoint(ctx)


def _disk_full_at_checkpoint(ctx):
    """The disk fills during epoch 2: its checkpoint cannot be written (fsync reports it, as
    with delayed allocation); config.json, rewritten by every resume, may change."""
    ctx.monkeypatch.setattr("fastcifar.checkpoint.os.fsync", _full)
    ctx.ignore = {Path("config.json")}
    return ["--resume", str(ctx.run), "--quiet", "--device", "cpu", "--data-dir", str(ctx.data),
            "--no-figures"]


def _resume_elsewhere(ctx):
    cwd = ctx.tmp / "elsewhere"
    cwd.mkdir()
    ctx.monkeypatch.chdir(cwd)  # the printed hint's command, run from another folder
    ctx.after = lambda: not (cwd / "data").exists()  # no stray ./data download attempt
    return ["--resume", str(ctx.run), "--quiet", "--device", "cpu", "--no-download",
            "--no-figures"]


def _no_data(ctx):
    return ["--model", "cnn", *common(ctx.tmp / "nothing", ctx.tmp / "new")]


def _corrupt_data(ctx):
    root = ctx.tmp / "corrupt"
    write_synthetic_cifar(root, n_train=100, n_test=50, seed=0)
    (root / "cifar-10-batches-py" / "test_batch").write_bytes(b"\x80\x02garbage")
    return ["--model", "cnn", *common(root, ctx.tmp / "new")]


def _readonly_out(ctx):
    # the tests run as root, whom chmod does not stop: a folder below a file cannot be made
    (ctx.tmp / "a-file").write_text("")
    return ["--model", "cnn", *common(ctx.data, ctx.tmp / "a-file" / "run")]


def _data_dir_a_file(ctx):
    (ctx.tmp / "cifar.tar.gz").write_text("")
    return ["--model", "cnn", "--data-dir", str(ctx.tmp / "cifar.tar.gz"), "--out",
            str(ctx.tmp / "new"), "--quiet", "--device", "cpu"]  # download allowed


def _resume(*flags):
    return lambda ctx: ["--resume", str(ctx.run), "--quiet", "--device", "cpu", "--no-figures",
                        *flags]


def _data_moved(ctx):
    """The run's recorded data folder is gone; FASTCIFAR_DATA (which --resume does not read)
    points at data, so a hint to set it would not help."""
    from fastcifar.checkpoint import load_checkpoint, save_checkpoint

    state = load_checkpoint(ctx.run / "last.pt")
    state["config"]["data_dir"] = str(ctx.tmp / "moved")
    save_checkpoint(state, ctx.run / "last.pt")
    ctx.monkeypatch.setenv("FASTCIFAR_DATA", str(ctx.data))
    return _resume()(ctx)


def _flags(*flags):
    return lambda ctx: ["--model", "cnn", *ctx.new, *flags]


# (id, argv from the context, exit code, what the error line says; None: a success, no error
# line), "run" in the id: the command touches the existing run folder, which must not change
CASES = [
    ("batch_larger_than_subset", lambda ctx: ["--model", "resnet_final", "--train-subset", "300",
                                              "--epochs", "1", *ctx.new],
     2, "--batch-size 512 is larger than the 300 training images"),
    ("batch_larger_than_data", _flags("--batch-size", "500"),
     2, "--batch-size 500 is larger than the 400 training images"),
    ("out_not_writable", _readonly_out, 2, "cannot be written"),
    ("run_disk_full", _disk_full, 2, "disk full: could not write"),
    ("run_disk_full_at_checkpoint", _disk_full_at_checkpoint, 2, "disk full: could not write"),
    ("val_split_negative", _flags("--val-split", "-5"), 2, "--val-split must be >= 0"),
    ("weight_decay_negative", _flags("--weight-decay", "-1"), 2, "--weight-decay must be >= 0"),
    ("label_smoothing_2", _flags("--label-smoothing", "2"), 2, "--label-smoothing must be in"),
    ("train_subset_0", _flags("--train-subset", "0", "--epochs", "1"),
     2, "--train-subset must be at least 1"),
    ("test_subset_0", _flags("--test-subset", "0", "--epochs", "1"),
     2, "--test-subset must be at least 1"),
    ("momentum_5", _flags("--momentum", "5"), 2, "--momentum must be in [0, 1)"),
    ("run_resume_without_data_dir", _resume_elsewhere, 0, None),
    ("run_corrupt_last_truncated", _corrupt("truncated"), 2, "best.pt is intact (epoch 1)"),
    ("run_corrupt_last_garbage", _corrupt("garbage"), 2, "best.pt is intact (epoch 1)"),
    ("cuda_without_gpu", _cuda_missing, 2, "no CUDA device"),
    ("fp16_on_cpu_warns", _flags("--amp", "fp16", "--epochs", "1", "--train-subset", "50",
                                 "--test-subset", "50", "--batch-size", "50"), 0, None),
    ("seed_negative", _flags("--seed", "-1"), 2, "--seed must be in [0, 2**32), not -1"),
    ("seed_huge", _flags("--seed", str(2**64)), 2, "--seed must be in [0, 2**32)"),
    ("data_dir_a_file", _data_dir_a_file, 2, "is a file, not a folder"),
    ("run_resume_its_last_pt", lambda ctx: ["--resume", str(ctx.run / "last.pt")],
     2, "--resume takes the run folder: --resume "),
    ("run_resume_another_seed", _resume("--seed", "3"), 2, "made with --seed 0; drop --seed 3"),
    ("run_resume_another_amp", _resume("--amp", "bf16"), 2, "made with --amp auto; drop --amp"),
    ("run_resume_another_subset", _resume("--train-subset", "50"), 2, "drop --train-subset 50"),
    ("run_resume_same_seed", _resume("--seed", "0"), 0, None),
    ("run_resume_data_moved", _data_moved, 2, "does not read FASTCIFAR_DATA"),
    # the ones that worked before this table, kept so
    ("no_data", _no_data, 2, "no CIFAR-10 data found"),
    ("corrupt_data", _corrupt_data, 2, "corrupt"),
    ("run_out_holds_a_run", lambda ctx: ["--model", "cnn", *common(ctx.data, ctx.run)],
     2, "already holds a run"),
    ("run_resume_with_settings", lambda ctx: ["--resume", str(ctx.run), "--lr", "0.1"],
     2, "drop"),
    ("epochs_0", _flags("--epochs", "0"), 2, "--epochs must be at least 1"),
    ("unknown_model", lambda ctx: ["--model", "resnet9"], 2, "invalid choice"),
]


class Context:
    def __init__(self, tmp, data, run, monkeypatch):
        self.tmp, self.data, self.run, self.monkeypatch = tmp, data, run, monkeypatch
        self.new = common(data, tmp / "new")  # flags of a fresh run, in a folder not yet made
        self.after = lambda: True
        self.ignore = set()  # files of the run folder the command may rewrite


@pytest.mark.parametrize("case, argv, code, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, argv, code, message, data_dir, stopped_run, tmp_path, monkeypatch,
                   capsys):
    run = tmp_path / "run"
    shutil.copytree(stopped_run, run)
    ctx = Context(tmp_path, data_dir, run, monkeypatch)
    args = argv(ctx)
    before = snapshot(run)
    capsys.readouterr()
    got = call(train.main, args)
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert got == code, err
    errors = [line for line in err.splitlines() if "error:" in line]
    if message is None:
        assert errors == [], err
    else:
        assert len(errors) == 1 and message in errors[0], err
        assert "weights_only" not in err  # torch's advice to load unsafely does not apply
    if case.startswith("run_") and code != 0:
        after = snapshot(run)
        for name in ctx.ignore:
            before.pop(name), after.pop(name)
        assert after == before  # nothing lost, nothing half-written beside it
    if code != 0:
        assert not (tmp_path / "new").exists()  # a refused run leaves no folder behind
    assert ctx.after()
    if case == "fp16_on_cpu_warns":
        assert [line for line in err.splitlines() if line.startswith("warning:")] == [
            next(line for line in err.splitlines() if "fp16 is slow on the CPU" in line)]
    if case.startswith("run_disk_full"):
        assert "still holds epoch 1" in errors[0] and "--resume" in errors[0]


def test_data_check_into_a_closed_pipe(synthetic_root):
    """``python -m fastcifar.data | head``: the reader leaves early; no BrokenPipeError."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "fastcifar.data", "--data-dir",
                             str(synthetic_root), "--no-download"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    proc.stdout.close()  # before the child prints anything (it is still importing)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err and "error:" not in err, err


def test_data_check_main_still_prints(synthetic_root, capsys):
    assert data_cli.main(["--data-dir", str(synthetic_root), "--no-download"]) == 0
    assert "train: 500 images" in capsys.readouterr().out
