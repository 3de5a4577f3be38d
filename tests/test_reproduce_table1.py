"""scripts/reproduce_table1.py: run, stop, resume and export a row; the table beside the
report's."""

import importlib.util
import json

import pytest

from conftest import REPO
from fastcifar.data.synthetic import write_synthetic_cifar


@pytest.fixture(scope="module")
def table1():
    spec = importlib.util.spec_from_file_location("reproduce_table1",
                                                  REPO / "scripts" / "reproduce_table1.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_synthetic_cifar(root, n_train=300, n_test=100, seed=0)
    return root


def train_flags(data_dir):
    return ["--data-dir", str(data_dir), "--device", "cpu", "--quiet", "--no-figures",
            "--train-subset", "200", "--test-subset", "100"]


def test_run_stop_resume_export_and_table(table1, data_dir, tmp_path, capsys):
    runs, results = tmp_path / "runs", tmp_path / "results"
    base = ["--run", "--rows", "row2_cnn_aug_plateau", "--out", str(runs),
            "--results", str(results), "--epochs", "3", *train_flags(data_dir)]
    # recipe overrides go to the first call only: a resumed run keeps its own settings
    assert table1.main(base + ["--batch-size", "50", "--stop-after", "2"]) == 0
    record = json.loads((results / "table1-row2_cnn_aug_plateau-cpu.json").read_text())
    assert [h["epoch"] for h in record["history"]] == [1, 2]
    assert record["status"] == "3, unfinished"
    assert "(epoch 2 of 3, unfinished)" in (results / "table1.md").read_text()

    assert table1.main(base) == 0  # the second call continues the same folder
    record = json.loads((results / "table1-row2_cnn_aug_plateau-cpu.json").read_text())
    history = record["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3] and record["status"] == "finished"
    best = max(history, key=lambda h: h["test_acc"])
    assert record["best_by_test"] == {"epoch": best["epoch"], "test_acc": best["test_acc"],
                                      "note": "epoch chosen on the test set, as the report did"}
    assert record["final"] == {"epoch": 3, "test_acc": history[-1]["test_acc"]}
    assert record["parameters"] == record["report"]["parameters"] == 1_838_346
    threads = record["environment"]["torch_threads"]
    assert record["command"] == (f"OMP_NUM_THREADS={threads} python -m fastcifar.train --recipe "
                                 "row2_cnn_aug_plateau --epochs 3 --batch-size 50")
    assert record["environment"]["torch"] and record["data"] == "CIFAR-10 (JPEG q75 copy)"
    assert not list(results.glob("*.pt"))  # never the checkpoints

    table = (results / "table1.md").read_text()
    row2 = next(line for line in table.splitlines() if "`row2_cnn_aug_plateau`" in line)
    cells = [c.strip() for c in row2.strip("|").split("|")]
    assert cells[3] == "87.50 % (69)"  # the report's
    assert cells[4] == f"{best['test_acc']:.2f} % ({best['epoch']})"
    assert cells[5] == f"{history[-1]['test_acc']:.2f} % (epoch 3)"
    assert "not run" in next(line for line in table.splitlines() if "`row1_cnn`" in line)
    for row in ("row3", "row4", "row5", "row6"):
        assert "needs a GPU" in next(line for line in table.splitlines() if f"`{row}_" in line)
    assert (results / "table1_test_acc.png").stat().st_size > 0


def test_thresholds_reached_are_shown_with_their_seconds(table1, tmp_path):
    history = [{"epoch": e, "test_acc": acc, "train_seconds_total": 60.0 * e}
               for e, acc in enumerate([80.0, 86.5, 88.0, 87.0], start=1)]
    record = {"recipe": "row1_cnn", "device": "cpu", "status": "4, unfinished",
              "final": {"epoch": 4, "test_acc": 87.0},
              "best_by_test": {"epoch": 3, "test_acc": 88.0},
              "thresholds": table1.threshold_table(history, thresholds=table1.THRESHOLDS),
              "environment": {"cpu": "Xeon", "cpu_cores": 2, "torch": "2.x", "torch_threads": 2},
              "speed": {"amp": "bf16"}, "history": history}
    row = table1.table_lines({"row1_cnn": [record]})[2]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[4:10] == ["88.00 % (3)", "87.00 % (epoch 4 of 4, unfinished)", "ep 2, 120 s",
                           "ep 3, 180 s", "not reached", "not reached"]


@pytest.mark.parametrize("argv, message", [
    (["--rows", "row9_x"], "--rows: unknown row9_x"),
    (["--export", "/nonexistent/run"], "no metrics.jsonl"),
    (["--seed", "3"], "training flags need --run"),
])
def test_bad_input_is_one_error_line(table1, tmp_path, capsys, argv, message):
    assert table1.main(argv + ["--results", str(tmp_path)]) == 2
    out = capsys.readouterr().out
    assert out.startswith("error: ") and message in out and out.count("\n") == 1


def test_export_picks_the_best_epoch_by_test_not_the_last(table1, tmp_path):
    import dataclasses

    from fastcifar.recipes import get_recipe

    run = tmp_path / "run"
    run.mkdir()
    recipe = dataclasses.asdict(get_recipe("row1_cnn"))
    config = {"recipe": recipe | {"epochs": 4}, "switches": {k: "auto" for k in
                                                            table1.SWITCH_FLAGS},
              "seed": 1, "val_split": 0, "model_parameters": 1_838_346, "device": "cpu",
              "speed": {"amp": "bf16"},
              "environment": {"cpu": "Xeon", "cpu_cores": 2, "torch": "2.x", "torch_threads": 2}}
    (run / "config.json").write_text(json.dumps(config))
    accs = [70.0, 86.0, 88.5, 87.0]
    (run / "metrics.jsonl").write_text("".join(
        json.dumps({"epoch": e, "test_acc": a, "train_seconds_total": 10.0 * e,
                    "eval_seconds": 1.0, "lr": 0.01}) + "\n" for e, a in enumerate(accs, 1)))
    record = json.loads(table1.export_run(run, tmp_path / "results").read_text())
    assert record["best_by_test"]["epoch"] == 3 and record["best_by_test"]["test_acc"] == 88.5
    assert record["final"] == {"epoch": 4, "test_acc": 87.0} and record["status"] == "finished"
    assert [t["epoch"] for t in record["thresholds"]] == [2, 3, None, None]
    assert record["train_seconds_total"] == 40.0 and record["eval_seconds_total"] == 4.0
    assert record["command"] == ("OMP_NUM_THREADS=2 python -m fastcifar.train --recipe row1_cnn "
                                 "--epochs 4 --seed 1")
