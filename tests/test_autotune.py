"""Measured auto switches (fastcifar.autotune): checks, timing choice, fallbacks, cache, doctor.

On the CPU the Triton kernels run in Triton's interpreter (scripts/test.sh sets TRITON_INTERPRET=1)
and DALI runs its CPU pipeline: tests that need a candidate the CPU does not measure (the kernel,
DALI) make it a candidate here, and plant the failure the fallback must survive.
"""

import importlib
import json
import multiprocessing
import random

import numpy as np
import pytest
import torch

from fastcifar import autotune, doctor, engine, train
from fastcifar.autotune import Timing, decide, pick_fastest
from fastcifar.recipes import get_recipe

AUTO = autotune.ALL_AUTO | {"compile": "off"}
CPU = torch.device("cpu")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache folder of this test's own."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "fastcifar"


def cnn(batch=16):
    return get_recipe("row1_cnn").replace(batch_size=batch)


def flags(data_dir, out, *extra):
    return ["--model", "cnn", "--epochs", "1", "--batch-size", "16", "--train-subset", "64",
            "--test-subset", "32", "--data-dir", str(data_dir), "--out", str(out), "--quiet",
            "--device", "cpu", "--no-figures", *extra]


def config_of(out):
    return json.loads((out / "config.json").read_text())


# ---- choosing by timing ----------------------------------------------------------------------

def timing(*ms):
    return Timing([m / 1e3 for m in ms])


def test_a_candidate_replaces_the_rule_only_beyond_the_noise():
    fast_and_steady = {"rule": timing(10, 10.1, 10.2), "other": timing(8, 8.1, 8.0)}
    assert pick_fastest("rule", fast_and_steady)[0] == "other"
    noisy = {"rule": timing(10, 14, 10.2), "other": timing(8, 8.1, 8.0)}  # 40 % spread
    winner, why = pick_fastest("rule", noisy)
    assert winner == "rule" and "within the noise" in why
    below_floor = {"rule": timing(10, 10, 10), "other": timing(9.8, 9.8, 9.8)}  # 2 % < 3 %
    assert pick_fastest("rule", below_floor)[0] == "rule"
    assert pick_fastest("rule", {"other": timing(9, 9, 9)})[0] == "other"  # the rule failed


def test_decide_measures_the_cpu_switches_and_restores_every_rng(cache):
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    before = (random.random(), np.random.rand(), torch.rand(1))
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    choice = decide(AUTO, cnn(), CPU)
    assert (random.random(), np.random.rand(), torch.rand(1)) == before
    assert "channels_last" in choice.record["decisions"]
    table = choice.record["timings"]["+".join(
        s for s in ("amp", "channels_last") if s in choice.record["decisions"])]
    assert all(c["ms"] > 0 for c in table["candidates"].values())
    assert choice.record["skipped"]["bn_relu"] == "the Triton kernels need CUDA"
    assert choice.speed.loader == "torch" and choice.line.startswith("auto (measured")


def test_explicit_switches_are_not_measured(cache):
    explicit = AUTO | {"amp": "off", "channels_last": "on", "bn_relu": "eager", "loader": "torch"}
    choice = decide(explicit, cnn(), CPU)
    assert choice.record["measured"] is False and choice.speed.channels_last is True
    assert not cache.exists()


# ---- the cache --------------------------------------------------------------------------------

def test_the_second_decision_hits_the_cache_and_times_nothing(cache, monkeypatch):
    first = decide(AUTO, cnn(), CPU)
    assert first.record["cache"] == "miss" and len(list(cache.glob("auto-*.json"))) == 1

    def no_timing(*args, **kwargs):
        raise AssertionError("a cached decision timed something")

    monkeypatch.setattr(autotune, "time_alternating", no_timing)
    second = decide(AUTO, cnn(), CPU)
    assert second.record["cache"] == "hit" and second.speed == first.speed
    assert second.line.startswith("auto (cached decision)")


def test_a_version_or_shape_change_misses_the_cache(cache, monkeypatch):
    decide(AUTO, cnn(), CPU)
    assert decide(AUTO, cnn(batch=8), CPU).record["cache"] == "miss"  # another batch size
    versions = autotune.software_versions()
    monkeypatch.setattr(autotune, "software_versions", lambda: versions | {"torch": "9.9.9"})
    assert decide(AUTO, cnn(), CPU).record["cache"] == "miss"
    assert len(list(cache.glob("auto-*.json"))) == 3


def test_the_cache_can_be_skipped_by_option_and_environment(cache, monkeypatch):
    assert decide(AUTO, cnn(), CPU, cache="off").record["cache"] == "off"
    assert not cache.exists()
    monkeypatch.setenv("FASTCIFAR_AUTO_CACHE", "off")
    assert decide(AUTO, cnn(), CPU).record["cache"] == "off"
    assert not cache.exists()


@pytest.mark.parametrize("garbage", ["{not json", '{"key": 1, "record": []}', ""])
def test_a_corrupt_cache_entry_is_ignored_and_rewritten(cache, capsys, garbage):
    first = decide(AUTO, cnn(), CPU)
    (key_path,) = cache.glob("auto-*.json")
    key_path.write_text(garbage)
    again = decide(AUTO, cnn(), CPU)
    assert again.record["cache"] == "miss" and again.speed == first.speed
    entry = json.loads(key_path.read_text())
    assert entry["record"]["speed"] == again.speed.as_dict()
    assert "Traceback" not in capsys.readouterr().err


def _write_many(key, tag, n):
    for i in range(n):
        autotune.write_cache(key, {"speed": {"writer": tag, "i": i}, "pad": "x" * 20_000})


def test_two_writers_at_once_leave_a_valid_file(cache, capsys):
    key = {"version": 0, "test": "concurrent"}
    ctx = multiprocessing.get_context("fork")
    writers = [ctx.Process(target=_write_many, args=(key, tag, 60)) for tag in "ab"]
    for w in writers:
        w.start()
    reads = 0
    while any(w.is_alive() for w in writers):
        record = autotune.read_cache(key)  # never half a file: valid, or not there yet
        reads += record is not None
        assert record is None or record["speed"]["writer"] in "ab"
    for w in writers:
        w.join()
        assert w.exitcode == 0
    assert autotune.read_cache(key)["speed"]["i"] == 59 and reads > 0
    assert "unreadable" not in capsys.readouterr().err  # no reader ever met half a file
    assert [p.name for p in cache.iterdir()] == [autotune.cache_path(key).name]  # no leftovers


# ---- fallbacks: a planted failure is dropped with one warning, and the run finishes -----------

def _slightly_off(monkeypatch):
    from fastcifar.kernels import bn_relu as K

    forward = K.bn_relu_forward

    def off_by_a_tenth_percent(*args, **kwargs):
        y, *rest = forward(*args, **kwargs)
        return (y * 1.001, *rest)

    monkeypatch.setattr(K, "bn_relu_forward", off_by_a_tenth_percent)


def _wrong_mask(monkeypatch):
    from fastcifar.kernels import bn_relu as K

    backward = K.bn_relu_backward

    def gradient_through_every_element(dy, x, weight, bias, mean, invstd, y=None, **kwargs):
        ones = None if y is None else torch.ones_like(y)  # as if every activation were > 0
        if y is None:  # the plain variant recomputes its mask from x: shift x to be positive
            x = x.abs() + 10 * x.float().std().to(x.dtype)
        return backward(dy, x, weight, bias, mean, invstd, ones, **kwargs)

    monkeypatch.setattr(K, "bn_relu_backward", gradient_through_every_element)


@pytest.mark.parametrize("plant", [_slightly_off, _wrong_mask])
def test_a_wrong_kernel_is_rejected_and_eager_runs(plant, data_dir, tmp_path, cache,
                                                  monkeypatch, capsys):
    from fastcifar.kernels import bn_relu as K

    if not K.INTERPRETED:
        pytest.skip("needs TRITON_INTERPRET=1 before triton is imported (./scripts/test.sh)")
    monkeypatch.setattr(autotune, "triton_runs_here", lambda device: True)
    plant(monkeypatch)
    out = tmp_path / "run"
    assert train.main(flags(data_dir, out, "--amp", "off", "--channels-last", "off")) == 0
    auto = config_of(out)["auto"]
    assert config_of(out)["speed"]["bn_relu"] == "eager"
    check = auto["decisions"]["bn_relu"]["check"]
    assert check["ok"] is False and check["worst"] > check["tolerance"]
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "dropped bn_relu=triton" in warnings[0]
    assert json.loads((out / "summary.json").read_text())["final"]["test_acc"] >= 0


def test_the_unplanted_kernel_passes_its_check(cache):
    from fastcifar.kernels import bn_relu as K

    if not K.INTERPRETED:
        pytest.skip("needs TRITON_INTERPRET=1 before triton is imported (./scripts/test.sh)")
    shapes = autotune.norm_layer_shapes(cnn())
    assert shapes[0] == (32, 32, 32, False) and len(shapes) == 5
    for dtype in (torch.float32, torch.bfloat16):
        check = autotune.check_bn_relu(shapes[:2], 2, dtype, True, CPU)
        assert check["ok"], check


class _PlantedCompilerError(RuntimeError):
    pass


def test_a_failing_compile_falls_back_to_eager_and_the_run_finishes(data_dir, tmp_path,
                                                                    monkeypatch, capsys):
    class Broken(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            raise _PlantedCompilerError("planted: the backend compiler failed")

    monkeypatch.setattr(torch, "compile", lambda model, mode=None: Broken(model))
    given, measured = tmp_path / "given", tmp_path / "measured"
    # switches given: nothing is timed, and the run's compile warm-up meets the failure
    assert train.main(flags(data_dir, given, "--compile", "default", "--amp", "off",
                            "--channels-last", "off")) == 0
    config = config_of(given)
    assert config["speed"]["compile"] == "off" and config["compile_seconds"] == 0
    assert "planted" in config["auto"]["compile_failed"]
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "torch.compile failed during its warm-up" in warnings[0]
    # switches on auto: timing the candidates meets it first, and the run is decided uncompiled
    assert train.main(flags(data_dir, measured, "--compile", "default")) == 0
    config = config_of(measured)
    assert config["speed"]["compile"] == "off"
    assert "planted" in config["auto"]["decisions"]["compile"]["why"]
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "torch.compile failed while timing" in warnings[0]
    assert (given / "summary.json").is_file() and (measured / "summary.json").is_file()


def test_compile_fallback_leaves_the_weights_as_they_were(monkeypatch):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    before = {k: v.clone() for k, v in model.state_dict().items()}

    class Half(torch.nn.Module):  # runs the model once (moving BN stats), then fails
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            self.m(x)
            raise _PlantedCompilerError("planted")

    monkeypatch.setattr(torch, "compile", lambda m, mode=None: Half(m))

    class Loader:
        def batch_sizes(self):
            return [4]

        def example_batch(self, size, generator=None):
            return torch.randn(size, 3, 8, 8, generator=generator)

    got, seconds, failed = engine.compile_model(model, "default", (Loader(), None, None), None,
                                                CPU, eval_too=False)
    assert got is model and seconds == 0.0 and "planted" in failed
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def _dali_or_skip():
    from fastcifar.augment.dali import require_dali

    try:
        require_dali()
    except ImportError:
        pytest.skip("DALI is not installed")


def test_a_dali_loader_with_misaligned_labels_is_dropped(data_dir, tmp_path, cache,
                                                         monkeypatch, capsys):
    _dali_or_skip()
    dali = importlib.import_module("fastcifar.augment.dali")  # the module the code imports

    iterate = dali.DaliLoader.__iter__

    def labels_one_off(self):
        for x, y in iterate(self):
            yield x, y.roll(1)

    monkeypatch.setattr(autotune, "dali_candidate_here", lambda device: True)
    monkeypatch.setattr(dali.DaliLoader, "__iter__", labels_one_off)
    out = tmp_path / "run"
    assert train.main(flags(data_dir, out, "--recipe", "row2_cnn_aug_plateau", "--model", "cnn",
                            "--amp", "off", "--channels-last", "off")) == 0
    config = config_of(out)
    assert config["speed"]["loader"] == "torch"
    assert "labels differ" in config["auto"]["decisions"]["loader"]["check"]["problem"]
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "dropped loader=dali" in warnings[0]


def test_a_dali_loader_that_raises_is_dropped(cache, monkeypatch, capsys):
    _dali_or_skip()
    dali = importlib.import_module("fastcifar.augment.dali")  # the module the code imports

    def broken(*args, **kwargs):
        raise RuntimeError("planted: no pipeline today")

    monkeypatch.setattr(autotune, "dali_candidate_here", lambda device: True)
    monkeypatch.setattr(dali.DaliLoader, "__init__", broken)
    images = np.zeros((64, 32, 32, 3), np.uint8)
    labels = np.arange(64) % 10
    choice = decide(AUTO | {"amp": "off", "channels_last": "off"},
                    get_recipe("row2_cnn_aug_plateau").replace(batch_size=8), CPU,
                    train_images=images, train_labels=labels)
    assert choice.speed.loader == "torch"
    assert "planted" in choice.record["timings"]["loader"]["candidates"]["dali"]["error"]
    assert capsys.readouterr().err.count("warning") == 1


def test_a_correct_dali_loader_keeps_the_contract():
    _dali_or_skip()
    from fastcifar.augment import get_preset, make_loader

    images = np.random.default_rng(0).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(64) % 10
    ld = {b: make_loader(images, labels, get_preset("flip_crop"), 16, train=True, backend=b,
                         seed=3) for b in ("dali", "torch")}
    assert autotune.check_loader(ld["dali"], ld["torch"], channels_last=True) is None


@pytest.mark.parametrize("args, hides", [
    (["--loader", "dali"], "dali"), (["--bn-relu", "triton"], "triton")])
def test_an_impossible_explicit_choice_exits_2_before_any_work(args, hides, data_dir, tmp_path,
                                                               monkeypatch, capsys):
    dali = importlib.import_module("fastcifar.augment.dali")  # the module the code imports
    from fastcifar.models import norms

    if hides == "dali":
        def missing():
            raise ImportError(dali.INSTALL_HINT)

        monkeypatch.setattr(dali, "require_dali", missing)
    else:
        monkeypatch.setattr(norms, "triton_usable", lambda: False)
        monkeypatch.setitem(norms.BN_RELU_IMPLS, "triton", None)
        norms.BN_RELU_IMPLS.pop("triton")
    out = tmp_path / "run"
    assert train.main(flags(data_dir, out, *args)) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "Traceback" not in err
    assert not out.exists()


# ---- the run: evidence, no change to what it learns, resume -----------------------------------

def test_a_measured_run_records_its_decision_and_the_next_hits_the_cache(data_dir, tmp_path,
                                                                         cache, capsys):
    first, second = tmp_path / "first", tmp_path / "second"
    assert train.main(flags(data_dir, first)) == 0
    assert train.main([a for a in flags(data_dir, second) if a != "--quiet"]) == 0
    one, two = config_of(first)["auto"], config_of(second)["auto"]
    assert one["cache"] == "miss" and two["cache"] == "hit"
    assert one["decisions"].keys() == two["decisions"].keys() and one["measured"]
    assert config_of(first)["speed"] == config_of(second)["speed"]
    assert "auto (cached decision): " in capsys.readouterr().out


def test_measuring_does_not_change_what_the_run_learns(data_dir, tmp_path, cache):
    measured, given = tmp_path / "measured", tmp_path / "given"
    assert train.main(flags(data_dir, measured, "--no-auto-cache")) == 0
    speed = config_of(measured)["speed"]
    assert train.main(flags(data_dir, given, "--amp", speed["amp"], "--channels-last",
                            "on" if speed["channels_last"] else "off", "--bn-relu", "eager",
                            "--loader", "torch")) == 0
    rows = [json.loads((d / "metrics.jsonl").read_text()) for d in (measured, given)]
    keys = ("train_loss", "train_acc", "test_loss", "test_acc")
    assert [rows[0][k] for k in keys] == [rows[1][k] for k in keys]


def test_resume_keeps_the_recorded_decisions(data_dir, tmp_path, cache, monkeypatch):
    out = tmp_path / "run"
    assert train.main(flags(data_dir, out, "--stop-after-steps", "2")) == 0
    recorded = config_of(out)["speed"]

    def no_deciding(*args, **kwargs):
        raise AssertionError("a resumed run decided its switches again")

    monkeypatch.setattr("fastcifar.run.decide", no_deciding)
    assert train.main(["--resume", str(out), "--quiet", "--no-figures",
                       "--data-dir", str(data_dir), "--device", "cpu"]) == 0
    assert config_of(out)["speed"] == recorded and (out / "summary.json").is_file()


# ---- the doctor ---------------------------------------------------------------------------------

def test_doctor_reports_every_section_as_json(cache, capsys):
    assert doctor.main(["--model", "cnn", "--json", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["machine"]["cpu"] and report["environment"]["torch"]
    assert set(report["auto"]["speed"]) >= {"amp", "channels_last", "bn_relu", "loader"}
    assert report["auto"]["record"]["cache"] == "refreshed"
    kernels = report["kernels"]
    assert "skipped" in kernels or all(r["ok"] for r in kernels["rows"])
    assert report["estimate"]["epoch_seconds"] > 0
    assert "imports" in report["dali"]
    # the doctor's measurement is the run's: the next decision is a cache hit
    recipe = get_recipe("row1_cnn")
    assert decide(autotune.ALL_AUTO, recipe, CPU, train_images=np.zeros((8, 32, 32, 3), np.uint8),
                  train_labels=np.zeros(8, np.int64)).record["cache"] == "hit"


def test_doctor_refuses_an_unknown_model(capsys):
    with pytest.raises(SystemExit) as stop:
        doctor.main(["--model", "nope"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "unknown --model" in err and "Traceback" not in err


def test_a_model_without_bn_relu_trains_eager_where_the_rule_picks_triton(monkeypatch):
    # on a GPU the rule's pick for bn_relu is triton; the speedrun has no BatchNorm+ReLU, and
    # create_model refuses an explicit triton for it, so auto must come out as eager
    from fastcifar.models import create_model, norms

    monkeypatch.setattr(norms, "auto_bn_relu", lambda: ("triton", "a GPU it is tested on"))
    monkeypatch.setattr(engine, "auto_amp", lambda device: "bf16")
    asked = autotune.ALL_AUTO | {"channels_last": "on", "compile": "off", "loader": "torch"}
    gpu = torch.device("cuda")
    assert engine.resolve_switches(asked, gpu).bn_relu == "triton"  # the rule, model-blind
    choice = decide(asked, get_recipe("speedrun10"), gpu, cache="off")
    assert choice.speed.bn_relu == "eager"
    with torch.device("meta"):
        create_model("speedrun", bn_relu=choice.speed.bn_relu)
