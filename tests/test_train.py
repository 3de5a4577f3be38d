"""The training CLI end to end on small synthetic data (CPU): outputs, resume, crashes, errors."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from torch import nn

from conftest import REPO
from fastcifar import engine, train
from fastcifar import evaluate as evaluate_cli
from fastcifar.checkpoint import load_checkpoint
from fastcifar.recipes import TABLE1


def flags(data_dir, out, *extra):
    return ["--data-dir", str(data_dir), "--out", str(out), "--quiet", "--device", "cpu", *extra]


def history(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def learned(rows):
    keys = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr")
    return [{k: r[k] for k in keys} for r in rows]


def test_cnn_run_writes_every_output(data_dir, tmp_path):
    out = tmp_path / "run"
    assert train.main(flags(data_dir, out, "--model", "cnn", "--epochs", "2",
                            "--batch-size", "50", "--lr", "0.05")) == 0
    for name in ("config.json", "metrics.jsonl", "summary.json", "best.pt", "last.pt",
                 "curves.png", "confusion.png", "per_class.png"):
        assert (out / name).is_file(), name
    rows = history(out)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[-1]["test_acc"] > 30  # 10 classes: chance is 10 %; the synthetic set is easy
    summary = json.loads((out / "summary.json").read_text())
    assert summary["parameters"] == 1_838_346
    assert summary["final"]["test_acc"] == rows[-1]["test_acc"]
    assert [t["threshold"] for t in summary["thresholds"]] == [86, 88, 90, 92, 94]
    assert "test set" in summary["best_by_test"]["note"]
    config = json.loads((out / "config.json").read_text())
    assert config["recipe"]["batch_size"] == 50 and config["environment"]["torch"]
    state = load_checkpoint(out / "last.pt")  # weights_only=True
    assert state["epoch"] == 2 and len(state["history"]) == 2


def test_same_seed_same_metrics_and_resume_matches(data_dir, tmp_path):
    common = ["--recipe", "row2_cnn_aug_plateau", "--batch-size", "50", "--lr", "0.05",
              "--val-split", "50", "--seed", "7"]
    straight = tmp_path / "straight"
    assert train.main(flags(data_dir, straight, *common, "--epochs", "3")) == 0
    again = tmp_path / "again"
    assert train.main(flags(data_dir, again, *common, "--epochs", "3")) == 0
    assert learned(history(again)) == learned(history(straight))
    # one epoch, then resume to three: the same numbers as the uninterrupted run
    split = tmp_path / "split"
    assert train.main(flags(data_dir, split, *common, "--epochs", "1")) == 0
    assert train.main(["--resume", str(split), "--epochs", "3", "--quiet",
                       "--data-dir", str(data_dir), "--device", "cpu"]) == 0
    assert learned(history(split)) == learned(history(straight))
    a, b = load_checkpoint(split / "last.pt"), load_checkpoint(straight / "last.pt")
    for key, value in a["model"].items():
        torch.testing.assert_close(value, b["model"][key], rtol=0, atol=0)
    summary = json.loads((split / "summary.json").read_text())
    assert summary["best_by_val"]["note"].startswith("epoch chosen on the validation split")
    assert "val_acc" in history(split)[0]


def test_nan_loss_stops_with_epoch_and_step(data_dir, tmp_path, monkeypatch, capsys):
    real = torch.nn.functional.cross_entropy
    calls = {"n": 0}

    def poisoned(logits, y, **kw):
        calls["n"] += 1
        loss = real(logits, y, **kw)
        # 400 images / 50 = 8 training calls per epoch, then 1 evaluation call (10 test images):
        # call 8 + 1 + 2 is epoch 2, step 2
        return loss * float("nan") if calls["n"] == 8 + 1 + 2 else loss

    monkeypatch.setattr("fastcifar.engine.F.cross_entropy", poisoned)
    out = tmp_path / "nan"
    code = train.main(flags(data_dir, out, "--model", "cnn", "--epochs", "3",
                            "--batch-size", "50", "--test-subset", "10"))
    assert code == 3
    assert "NaN or infinite at epoch 2, step 2" in capsys.readouterr().err
    assert load_checkpoint(out / "last.pt")["epoch"] == 1  # the last good epoch is kept


def test_every_table1_recipe_runs_one_epoch(data_dir, tmp_path):
    for name in TABLE1:
        out = tmp_path / name
        code = train.main(flags(data_dir, out, "--recipe", name, "--epochs", "1",
                                "--train-subset", "100", "--test-subset", "50", "--no-figures"))
        assert code == 0, name
        assert len(history(out)) == 1


def test_evaluate_cli_matches_the_run(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert train.main(flags(data_dir, out, "--model", "cnn", "--epochs", "1",
                            "--batch-size", "50", "--no-figures")) == 0
    best = load_checkpoint(out / "best.pt")
    capsys.readouterr()
    assert evaluate_cli.main([str(out), "--data-dir", str(data_dir), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert f"test accuracy {best['metrics']['test_acc']:.2f}%" in printed
    assert "confusion matrix" in printed and "airplane" in printed


@pytest.mark.parametrize("bad, message", [
    ([], "say what to train"),
    (["--model", "cnn", "--recipe", "row3_resnet_hybrid"], "conflicts with --recipe"),
    (["--model", "cnn", "--epochs", "0"], "--epochs must be at least 1"),
    (["--model", "cnn", "--augment", "sparkles"], "--augment"),
    (["--model", "resnet9"], "invalid choice"),
    (["--resume", "x", "--lr", "0.1"], "drop"),
])
def test_bad_flags_are_rejected(bad, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        train.main(bad)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_cuda_without_a_gpu_is_a_clear_error(data_dir, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(SystemExit) as exit_:
        train.main(flags(data_dir, tmp_path / "x", "--model", "cnn") + ["--device", "cuda"])
    assert exit_.value.code == 2 and "no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_missing_data_is_a_clear_error(tmp_path, capsys):
    code = train.main(flags(tmp_path / "none", tmp_path / "run", "--model", "cnn",
                            "--no-download"))
    assert code == 2 and "no CIFAR-10 data found" in capsys.readouterr().err


def _start_training(data_dir, out):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "fastcifar.train", *flags(data_dir, out, "--model", "cnn",
           "--epochs", "50", "--batch-size", "10", "--test-subset", "20", "--no-figures")]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _wait_for(path, proc, timeout=120):
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.1)
    time.sleep(0.5)  # into the next epoch


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_run_leaves_a_loadable_checkpoint(data_dir, tmp_path, sig):
    out = tmp_path / "killed"
    proc = _start_training(data_dir, out)
    _wait_for(out / "last.pt", proc)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=240)  # generous: CI cores may be busy
    state = load_checkpoint(out / "last.pt")
    assert state["epoch"] >= 1 and state["model"]
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "Traceback" not in stderr
        assert f"holds epoch {state['epoch']}" in stdout and "--resume" in stdout
    else:
        assert proc.returncode == -signal.SIGKILL
    assert train.main(["--resume", str(out), "--epochs", str(state["epoch"] + 1), "--quiet",
                       "--data-dir", str(data_dir), "--device", "cpu", "--no-figures"]) == 0
    assert load_checkpoint(out / "last.pt")["epoch"] == state["epoch"] + 1


def test_onecycle_ema_tta_resume_matches(data_dir, tmp_path):
    # the fast recipe's machinery (per-step one-cycle lr, EMA, TTA, no decay on BN/bias) on the
    # cnn, cheaply: interrupted after one epoch and resumed, it ends where a straight run does
    common = ["--model", "cnn", "--batch-size", "50", "--lr", "0.05", "--scheduler", "onecycle",
              "--ema-decay", "0.9", "--tta", "flip_translate", "--augment", "flip_crop",
              "--test-subset", "50", "--no-figures"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert train.main(flags(data_dir, straight, *common, "--epochs", "2")) == 0
    assert train.main(flags(data_dir, split, *common, "--epochs", "2", "--stop-after", "1")) == 0
    assert not (split / "summary.json").exists() and len(history(split)) == 1
    assert train.main(["--resume", str(split), "--quiet", "--no-figures",
                       "--data-dir", str(data_dir), "--device", "cpu"]) == 0
    assert learned(history(split)) == learned(history(straight))
    lrs = [r["lr"] for r in history(straight)]
    assert lrs[-1] == 0.0 and lrs[0] > 0  # linear decay to zero at the last step
    state = load_checkpoint(straight / "last.pt")
    assert state["ema"]["updates"] == 2  # every 5 steps: step 5 of each 8-step epoch


def test_speed_switches_run_on_the_cpu(data_dir, tmp_path):
    # one compile only (25 s cold on 2 cores): with an EMA, evaluation runs the eager EMA copy
    out = tmp_path / "fast"
    code = train.main(flags(data_dir, out, "--model", "cnn", "--epochs", "1", "--batch-size",
                            "32", "--train-subset", "64", "--test-subset", "32", "--amp", "bf16",
                            "--channels-last", "on", "--compile", "default", "--ema-decay", "0.5",
                            "--no-figures"))
    assert code == 0
    config = json.loads((out / "config.json").read_text())
    assert config["speed"] == {"amp": "bf16", "channels_last": True, "compile": "default",
                               "bn_relu": "eager", "cpu_malloc": "keep", "loader": "torch"}
    assert config["compile_seconds"] > 0  # measured apart from training time
    assert history(out)[0]["train_seconds"] < config["compile_seconds"] + 60


def test_fast_recipe_is_the_resnet_final_default_and_runs(data_dir, tmp_path):
    from fastcifar.recipes import DEFAULT_RECIPE, get_recipe

    assert DEFAULT_RECIPE["resnet_final"] == "fast"
    fast = get_recipe("fast")
    assert (fast.batch_size, fast.scheduler, fast.tta, fast.nesterov) == (
        512, "onecycle", "flip_translate", True)
    out = tmp_path / "fast"
    code = train.main(flags(data_dir, out, "--model", "resnet_final", "--epochs", "1",
                            "--batch-size", "32", "--train-subset", "64", "--test-subset", "16",
                            "--no-figures"))
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["recipe"] == "fast" and summary["parameters"] == 5_159_146


def layout(x):
    return tuple(x.shape), x.dtype, x.stride()


@pytest.mark.parametrize("channels_last", ["on", "off"])
def test_compile_warmup_sees_every_input_layout_training_will(data_dir, tmp_path, monkeypatch,
                                                             channels_last):
    # torch.compile stood in for by a recorder (a real compile costs ~25 s here): every input
    # the step and eval model meet after the warm-up (training batches, partial eval batches,
    # TTA views) must have been met during it, else epoch 1 recompiles; and the batches follow
    # --channels-last both ways
    seen, warmup = [], []

    class Recorder(nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            seen.append((self.model.training, *layout(x)))
            return self.model(x)

    def compile_model(*args, **kwargs):
        out = compile_warmup(*args, **kwargs)
        warmup.extend(seen)
        seen.clear()
        return out

    compile_warmup = engine.compile_model
    monkeypatch.setattr(torch, "compile", lambda model, mode=None: Recorder(model))
    monkeypatch.setattr(engine, "compile_model", compile_model)
    out = tmp_path / channels_last
    assert train.main(flags(data_dir, out, "--model", "cnn", "--epochs", "1", "--batch-size",
                            "32", "--train-subset", "100", "--test-subset", "60", "--val-split",
                            "30", "--tta", "flip_translate", "--compile", "default",
                            "--channels-last", channels_last, "--no-figures")) == 0
    assert warmup and seen and set(seen) <= set(warmup)
    first_step = next(s for s in seen if s[0])
    assert first_step == warmup[0] and first_step[1] == (32, 3, 32, 32)
    sizes = {s[1][0] for s in seen if not s[0]}
    assert sizes == {60, 30}  # the eval batch size is 500: each split is one partial batch
    train_batches = [s for s in seen if s[0]]
    x = torch.empty(first_step[1]).as_strided(first_step[1], first_step[3])
    assert x.is_contiguous(memory_format=torch.channels_last) == (channels_last == "on")
    assert x.is_contiguous() == (channels_last == "off") and len(train_batches) == 3


@pytest.mark.parametrize("native_bf16, want", [(True, "bf16"), (False, "fp16")])
def test_auto_amp_is_bf16_only_where_the_gpu_has_it(monkeypatch, native_bf16, want):
    asked = []

    def is_bf16_supported(including_emulation=True):
        asked.append(including_emulation)
        return native_bf16 or including_emulation  # as torch: emulated bf16 counts by default

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    auto = {"amp": "auto", "channels_last": "auto", "compile": "auto", "bn_relu": "auto"}
    assert engine.resolve_switches(auto, torch.device("cuda")).amp == want
    assert asked == [False]  # emulated bf16 (T4, V100) is slow: it must not count
    monkeypatch.setattr(engine, "cpu_native_bf16", lambda: False)  # a CPU without bf16
    assert engine.resolve_switches(auto, torch.device("cpu")).amp == "off"
    assert engine.resolve_switches(auto | {"amp": "bf16"}, torch.device("cuda")).amp == "bf16"


@pytest.mark.parametrize("stop_at", [11, 8])  # mid-epoch 2 (an EMA step apart), an epoch's end
def test_mid_epoch_checkpoint_resumes_bitwise(data_dir, tmp_path, capsys, stop_at):
    """Stopped after a mid-epoch checkpoint and resumed, a run ends as an uninterrupted one:
    the per-step one-cycle schedule, the EMA (every 5 steps) and the augmented order included.
    400 images / 50 = 8 steps an epoch: step 11 is step 3 of epoch 2."""
    common = ["--recipe", "row2_cnn_aug_plateau", "--batch-size", "50", "--lr", "0.05",
              "--scheduler", "onecycle", "--ema-decay", "0.9", "--epochs", "3", "--seed", "3",
              "--no-figures"]
    straight = tmp_path / "straight"
    assert train.main(flags(data_dir, straight, *common)) == 0
    split = tmp_path / "split"
    assert train.main(flags(data_dir, split, *common, "--checkpoint-minutes", "0",
                            "--stop-after-steps", str(stop_at))) == 0
    state = load_checkpoint(split / "last.pt")
    assert (state["epoch"], state.get("step", 0)) == divmod(stop_at, 8)
    capsys.readouterr()
    assert train.main(["--resume", str(split), "--data-dir", str(data_dir), "--device", "cpu",
                       "--no-figures"]) == 0
    printed = capsys.readouterr().out
    assert f"resuming {split} after epoch {stop_at // 8}" in printed
    assert ("and 3 steps of epoch 2" in printed) == (stop_at == 11)
    assert learned(history(split)) == learned(history(straight))
    a, b = load_checkpoint(split / "last.pt"), load_checkpoint(straight / "last.pt")
    for part in ("model", "ema"):
        for key, value in (a[part] if part == "model" else a[part]["module"]).items():
            other = b[part] if part == "model" else b[part]["module"]
            torch.testing.assert_close(value, other[key], rtol=0, atol=0)


def test_estimate_and_no_resume_hint_without_a_checkpoint(data_dir, tmp_path, monkeypatch,
                                                          capsys):
    """Ctrl-C before any checkpoint: no --resume hint (it would fail); the run's time is
    estimated after the first timed steps."""
    real = engine.F.cross_entropy
    calls = {"n": 0}

    def interrupt_at_step_5(logits, y, **kw):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(logits, y, **kw)

    monkeypatch.setattr("fastcifar.engine.F.cross_entropy", interrupt_at_step_5)
    out = tmp_path / "run"
    argv = ["--data-dir", str(data_dir), "--out", str(out), "--device", "cpu", "--model", "cnn",
            "--batch-size", "50", "--epochs", "2", "--no-figures"]
    assert train.main(argv) == 130
    printed = capsys.readouterr().out
    assert "interrupted by Ctrl-C; no checkpoint was written yet; nothing to resume" in printed
    assert "--resume" not in printed and not (out / "last.pt").exists()
    assert "estimate: ~" in printed and "an epoch" in printed and "(12 steps left" in printed


def test_a_swallowed_ctrl_c_is_still_remembered():
    # a KeyboardInterrupt that lands in a finalizer is dropped by Python; the stopper keeps the
    # signal, so the run stops at its next step instead of training on to the end
    from fastcifar.lifecycle import Interrupted, Stopper

    before = signal.getsignal(signal.SIGINT)
    with Stopper() as stopper:
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the handler runs here
        except KeyboardInterrupt:
            pass  # as a __del__ would swallow it
        with pytest.raises(Interrupted):
            stopper.check()
    assert signal.getsignal(signal.SIGINT) is before
