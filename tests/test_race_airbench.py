"""python -m benchmarks.airbench race: one race end to end at toy size (airbench94 really runs, on
the CPU, behind its shims), the summary's arithmetic, --resume, and that the GPU suite races the
same recipe."""

import dataclasses
import importlib
import json
import re

import pytest

from conftest import REPO
from fastcifar.data.synthetic import write_synthetic_cifar
from fastcifar.env import cpu_native_bf16
from fastcifar.recipes import ABLATION_ALL, ABLATION_BASE, RACE_RECIPE, get_recipe


@pytest.fixture(scope="module")
def race():
    return importlib.import_module("benchmarks.airbench.race")


def test_race_runs_both_trainers_and_times_ours_as_airbench_counts(race, tmp_path, capsys):
    pytest.importorskip("airbench")
    data = tmp_path / "data"
    write_synthetic_cifar(data, n_train=1100, n_test=100, seed=0)  # one step of 1024 an epoch
    out = tmp_path / "results"
    code = race.main(["--data-dir", str(data), "--seeds", "0", "--airbench-epochs", "1",
                      "--work", str(tmp_path / "work"), "--out", str(out), "--data-name", "toy",
                      "--control", "--", "--epochs", "1", "--batch-size", "1024"])
    assert code == 0
    result = json.loads((out / "race_airbench_cpu.json").read_text())
    assert [r["trainer"] for r in result["rows"]] == ["airbench94", "ours", race.CONTROL]
    airbench, ours, control = result["rows"]
    # the control is airbench94 in a process with our allocator setting, airbench94 without
    assert airbench["cpu_malloc"] == "default" and control["cpu_malloc"] == "keep"
    assert ours["speed"]["cpu_malloc"] == "keep"
    assert "ratio" in result["summary"]["control"]
    assert airbench["seconds"] > 0 and 0 <= airbench["test_acc"] <= 100
    assert "total_time_seconds" in airbench["printed"]  # its own timer, read from its table
    parts = ours["init_seconds"] + ours["train_seconds"] + ours["final_tta_seconds"]
    # the total is rounded to 0.1 s and each part to 0.01 s: they may differ by 0.05 + 3 * 0.005
    assert ours["seconds"] == pytest.approx(parts, abs=0.066)
    assert ours["init_seconds"] > 0  # the whitening fit is counted, as airbench counts its own
    assert ours["final_tta_seconds"] == round(ours["history"][-1]["eval_seconds"], 2)
    assert ours["recipe"]["name"] == RACE_RECIPE and ours["recipe"]["epochs"] == 1
    # both in the arithmetic our --amp auto picks on this CPU
    assert airbench["amp"] == ours["amp"] == ("bf16" if cpu_native_bf16() else "fp32")
    assert result["summary"]["same_amp"] is True
    assert result["summary"]["ratio"] == pytest.approx(
        result["summary"]["ours"]["seconds_mean"] / result["summary"]["airbench94"]
        ["seconds_mean"], rel=0.05)  # the means are rounded to 0.1 s; a toy run takes ~3 s
    assert "ratio" in result["summary"] and result["data_name"] == "toy"
    assert "in" in capsys.readouterr().out


def row(trainer, seed, acc, seconds):
    return {"trainer": trainer, "seed": seed, "test_acc": acc, "seconds": seconds}


@pytest.mark.parametrize("ours, met", [
    ([(0, 90.7, 690.0), (1, 90.6, 700.0)], True),  # +0.03 points in 0.583x
    ([(0, 90.5, 690.0), (1, 90.6, 700.0)], False),  # 0.07 points short
    ([(0, 90.7, 990.0), (1, 90.6, 1000.0)], False),  # 0.83x: too slow
    ([(0, 95.0, 100.0)], False),  # a seed missing: not the same seeds
])
def test_summary_means_ratio_and_verdict(race, ours, met):
    rows = [row("airbench94", 0, 90.6, 1180.0), row("airbench94", 1, 90.7, 1200.0)]
    rows += [row("ours", s, a, t) for s, a, t in ours]
    rows.append({"trainer": "ours", "seed": 2, "error": "our run failed"})  # not counted
    summary = race.summarize(rows, 0.7)
    assert summary["airbench94"]["test_acc_mean"] == 90.65
    assert summary["airbench94"]["seconds_mean"] == 1190.0
    assert summary["ratio"] == round(summary["ours"]["seconds_mean"] / 1190.0, 3)
    assert summary["met"] is met


def test_a_race_in_two_arithmetics_is_not_met(race):
    rows = [dict(row("airbench94", 0, 90.6, 1000.0), amp="bf16"),
            dict(row("ours", 0, 90.7, 600.0), amp="fp32")]
    summary = race.summarize(rows, 0.7)
    assert summary["same_amp"] is False and summary["met"] is False
    rows[0]["amp"] = "fp32"
    assert race.summarize(rows, 0.7)["met"] is True
    rows.append(dict(row("ours", 1, 90.7, 600.0), amp="bf16"))  # ours in both: not one
    rows.append(dict(row("airbench94", 1, 90.6, 1000.0), amp="bf16"))
    assert race.summarize(rows, 0.7)["same_amp"] is False


@pytest.mark.parametrize("native, amp, expected", [
    (True, "auto", "bf16"), (False, "auto", "fp32"), (False, "bf16", "bf16"),
    (True, "fp32", "fp32")])
def test_airbench_runs_in_the_arithmetic_our_trainer_picks(race, monkeypatch, native, amp,
                                                           expected):
    from benchmarks.airbench import peer
    from fastcifar import engine

    monkeypatch.setattr(engine, "cpu_native_bf16", lambda: native)
    assert peer.airbench_amp(amp) == expected
    with pytest.raises(ValueError, match="auto, bf16 or fp32"):
        peer.airbench_amp("fp16")


def test_summary_races_ours_against_the_control_too(race):
    rows = [row("airbench94", 0, 90.6, 1000.0), row(race.CONTROL, 0, 90.6, 800.0),
            row("ours", 0, 90.7, 600.0)]
    summary = race.summarize(rows, 0.7)
    assert summary["ratio"] == 0.6 and summary["met"] is True
    assert summary["control"] == {"ratio": 0.75, "acc_gap": 0.1, "same_amp": True, "met": False}
    assert "control" not in race.summarize(rows[::2], 0.7)
    # a control for seed 0 only: also compared on the seeds both have
    rows += [row("airbench94", 1, 90.7, 1000.0), row("ours", 1, 90.5, 700.0)]
    control = race.summarize(rows, 0.7)["control"]
    assert control["met"] is False  # not the same seeds
    assert control["same_seeds"] == {"seeds": [0], "ratio": 0.75, "acc_gap": 0.1}


def test_resume_keeps_finished_runs_and_refuses_another_recipe(race, tmp_path, capsys):
    pytest.importorskip("airbench")
    data = tmp_path / "data"
    write_synthetic_cifar(data, n_train=50, n_test=20, seed=0)
    earlier = {"recipe": RACE_RECIPE, "train_flags": [],
               "rows": [row("airbench94", 0, 90.0, 10.0), row("ours", 0, 91.0, 5.0)]}
    (tmp_path / "race.json").write_text(json.dumps(earlier))
    base = ["--data-dir", str(data), "--seeds", "0", "--name", "race", "--out", str(tmp_path),
            "--work", str(tmp_path / "work"), "--resume"]
    assert race.main(base) == 0  # nothing left to train
    result = json.loads((tmp_path / "race.json").read_text())
    assert result["rows"] == earlier["rows"] and result["summary"]["ratio"] == 0.5
    assert race.main(base + ["--recipe", "speedrun"]) == 2
    assert f"raced {RACE_RECIPE}" in capsys.readouterr().err


@pytest.mark.parametrize("seeds", ["", "0,0", "a,b", "-1"])
def test_bad_seeds_are_one_error_line(race, seeds, capsys):
    assert race.main(["--seeds", seeds]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --seeds") and err.count("\n") == 1


def test_the_gpu_suite_races_the_same_recipe():
    suite = (REPO / "scripts" / "maint" / "gpu_suite.sh").read_text()
    step = re.search(r"step speedrun_vs_airbench .*?--recipe (\S+)", suite)
    assert step and step.group(1) == RACE_RECIPE
    get_recipe(RACE_RECIPE)  # and it exists


def same_training(a, b) -> bool:
    """Two recipes that train alike: every field but the name and description equal."""
    skip = {"name", "description"}
    return all(getattr(a, f.name) == getattr(b, f.name) for f in dataclasses.fields(a)
               if f.name not in skip)


def test_ablation_variants_switch_each_part_and_merge_model_options():
    ablation = importlib.import_module("benchmarks.airbench.ablation")
    every = ablation.variant_flags("all")
    assert every.count("--model-options") == 1
    assert every[every.index("--model-options") + 1] == "bn_momentum=0.4,whiten_bias_epochs=3"
    assert ablation.variant_flags("none") == []
    without = ablation.variant_flags("all-lookahead")
    assert "--lookahead" not in without and "--warmup-start" in without
    assert ablation.variant_flags("all-whiten_bias")[-1] == "bn_momentum=0.4"
    assert ablation.variant_flags("only-reflect_crop") == ["--augment", "altflip_crop2_reflect"]
    from fastcifar.train import get_args_parser, resolve_recipe

    parser = get_args_parser()
    trained = {}
    for name in ablation.default_variants():  # every variant's flags make a valid Recipe
        args = parser.parse_args(["--recipe", ABLATION_BASE, *ablation.variant_flags(name)])
        trained[name] = resolve_recipe(args, parser)
        assert trained[name].lookahead == ("lookahead" in ablation.variant_parts(name))
    # the ablation's ends are the two recipes: "all" trains race10, "none" its base
    assert same_training(trained["all"], get_recipe(ABLATION_ALL))
    assert same_training(trained["none"], get_recipe(ABLATION_BASE))
    assert not same_training(trained["all-bn_momentum"], get_recipe(ABLATION_ALL))
    with pytest.raises(ValueError, match="unknown variant"):
        ablation.variant_parts("all-nothing")


def test_ablation_adds_to_the_table_an_earlier_invocation_wrote(tmp_path, monkeypatch):
    ablation = importlib.import_module("benchmarks.airbench.ablation")
    accuracy = {"all": 90.7, "none": 90.0, "all-lookahead": 90.4}
    trained = []

    def fake_run(name, seed, args, work):  # what run_variant reads from a finished run
        trained.append(name)
        return {"variant": name, "seed": seed, "flags": [], "test_acc": accuracy[name],
                "race_seconds": 1.0, "test_acc_per_epoch": [accuracy[name]]}

    monkeypatch.setattr(ablation, "run_variant", fake_run)
    args = ["--out", str(tmp_path), "--work", str(tmp_path / "work")]
    assert ablation.main(["--variants", "all,none", *args]) == 0
    accuracy["all"] = 90.8  # the same run read again: replaced in place, not duplicated
    assert ablation.main(["--variants", "all-lookahead,all", *args]) == 0
    saved = json.loads((tmp_path / "race_ablation-cpu.json").read_text())
    assert [(r["variant"], r["test_acc"]) for r in saved["table"]] == [
        ("all", 90.8), ("none", 90.0), ("all-lookahead", 90.4)]
    assert trained == ["all", "none", "all-lookahead", "all"]
    # another base recipe's table is not merged into this one's
    assert ablation.main(["--variants", "none", "--recipe", "speedrun", *args]) == 0
    saved = json.loads((tmp_path / "race_ablation-cpu.json").read_text())
    assert [r["variant"] for r in saved["table"]] == ["none"]
