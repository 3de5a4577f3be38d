"""benchmarks/harness.py: what every throughput benchmark relies on it for: the JSON rewritten
after every row, alternating rounds and their median, a failing row kept (not fatal), the table,
the timing of warm-up and timed calls, and the subcommand dispatch."""

import ast
import json
import time

import pytest

from benchmarks.harness import Bench, Skip, median_of, save_result, subcommands
from conftest import REPO


def _bench(tmp_path, **kw):
    return Bench("toy", "python -m benchmarks.toy", ["--steps", "2", "--out", "a b"],
                 {"steps": 2}, ["name", "images_per_s"], out=tmp_path, **kw)


def _saved(tmp_path) -> dict:
    return json.loads((tmp_path / "toy.json").read_text())


def test_the_json_is_rewritten_after_every_row(tmp_path):
    bench = _bench(tmp_path, meta={"data": "none"})
    seen = []  # rows on disk when each row starts measuring

    def measure(row):
        path = tmp_path / "toy.json"
        seen.append(len(json.loads(path.read_text())["rows"]) if path.exists() else 0)
        return {"images_per_s": 1.0}

    bench.run([{"name": n} for n in "abc"], measure=measure)
    assert seen == [0, 1, 2]
    saved = _saved(tmp_path)
    assert [r["name"] for r in saved["rows"]] == ["a", "b", "c"]
    assert saved["command"] == "python -m benchmarks.toy --steps 2 --out 'a b'"
    assert saved["settings"] == {"steps": 2} and saved["data"] == "none"
    assert {"cpu", "torch", "time"} <= set(saved["environment"])
    assert not list(tmp_path.glob(".*tmp"))  # the atomic write leaves no temporary file


def test_rounds_alternate_and_the_median_round_is_kept(tmp_path):
    calls = []
    values = {"a": iter([1.0, 9.0, 3.0]), "b": iter([20.0, 10.0, 30.0])}

    def measure(row):
        calls.append(row["name"])
        return {"images_per_s": next(values[row["name"]]), "faults": 7}

    rows = _bench(tmp_path).run([{"name": "a"}, {"name": "b"}], measure=measure, rounds=3)
    assert calls == ["a", "b"] * 3
    assert [r["images_per_s"] for r in rows] == [3.0, 20.0]
    assert rows[0]["faults"] == 7 and isinstance(rows[0]["faults"], int)


def test_a_failing_row_is_kept_and_the_others_still_run(tmp_path, capsys):
    def setup(row):
        if row["name"] == "bad":
            raise RuntimeError("out of memory")
        if row["name"] == "elsewhere":
            raise Skip("needs CUDA")
        return (lambda: None), 4

    bench = _bench(tmp_path)
    bench.run([{"name": n} for n in ("good", "bad", "elsewhere", "after")], setup, steps=2)
    rows = {r["name"]: r for r in _saved(tmp_path)["rows"]}
    assert rows["bad"] == {"name": "bad", "error": "RuntimeError: out of memory"}
    assert rows["elsewhere"] == {"name": "elsewhere", "note": "skipped: needs CUDA"}
    assert rows["good"]["images_per_s"] > 0 and rows["after"]["images_per_s"] > 0
    assert bench.report("toy") == 1  # a failed row fails the benchmark, after the table
    table = capsys.readouterr().out
    for name in ("good", "bad", "elsewhere", "after", "out of memory", "needs CUDA"):
        assert name in table
    assert table.splitlines()[-1] == f"saved {tmp_path / 'toy.json'}"


def test_a_skip_alone_is_no_failure(tmp_path):
    def setup(row):
        raise Skip("not here")

    bench = _bench(tmp_path)
    bench.run([{"name": "a"}], setup)
    assert bench.report() == 0


def test_warm_up_is_untimed_and_the_rate_counts_items(tmp_path):
    calls = []

    def setup(row):
        def work():
            calls.append(time.perf_counter())
            time.sleep(0.5 if len(calls) == 1 else 0.01)  # the warm-up call is the slow one
        return work, 5

    row, = _bench(tmp_path).run([{"name": "a", "_private": object()}], setup, steps=3,
                                warmup=1)
    assert len(calls) == 4
    assert 0.5 <= row["warmup_seconds"] < 2
    # 5 images per 0.01 s call: at most 500/s; the warm-up call counted would give under 30/s
    assert 100 <= row["images_per_s"] <= 500
    assert "_private" not in row


def test_seconds_a_call_without_a_unit(tmp_path):
    def setup(row):
        return (lambda: time.sleep(0.01)), 1

    row, = _bench(tmp_path, unit=None).run([{"name": "a"}], setup, steps=2, rounds=2,
                                           reduce=lambda rounds: rounds[-1])
    assert 0.01 <= row["seconds"] < 0.5 and "images_per_s" not in row


def test_median_keeps_whole_numbers_whole():
    assert median_of([{"n": 1, "x": 1.0}, {"n": 2, "x": 2.0}]) == {"n": 2, "x": 1.5}
    assert median_of([{"x": 123456.7}]) == {"x": 123500.0}


@pytest.mark.parametrize("argv, ran", [([], ("first", [], "prog")),
                                       (["--steps", "2"], ("first", ["--steps", "2"], "prog")),
                                       (["second", "-h"], ("second", ["-h"], "prog second"))])
def test_subcommands_default_to_the_first(argv, ran):
    got = []
    mains = {name: (lambda a, p, name=name: got.append((name, a, p)) or 0)
             for name in ("first", "second")}
    assert subcommands("prog", mains, argv) == 0
    assert got == [ran]


def test_an_unknown_subcommand_is_one_error_line(capsys):
    assert subcommands("prog", {"first": lambda a, p: 0}, ["third"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown subcommand 'third'") and len(err.splitlines()) == 1


def test_a_result_outside_the_harness_says_how_it_was_made(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.argv", ["toy", "--seeds", "0,1", "--", "--epochs", "2"])
    from benchmarks.harness import invocation

    path = save_result("race", {"rows": []}, tmp_path, settings={"seeds": "0,1"},
                       command=invocation("python -m benchmarks.airbench race", None))
    saved = json.loads(path.read_text())
    assert saved["command"] == "python -m benchmarks.airbench race --seeds 0,1 -- --epochs 2"
    assert saved["settings"] == {"seeds": "0,1"} and "cpu" in saved["environment"]


def test_every_benchmark_saving_a_result_names_its_command_and_settings():
    callers = 0
    for path in (REPO / "benchmarks").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "save_result":
                callers += 1
                named = {k.arg for k in node.keywords}
                assert {"command", "settings"} <= named, f"{path.name}:{node.lineno}"
    assert callers >= 7
