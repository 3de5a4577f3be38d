"""The GPU suite's plumbing, checked on the CPU: its arguments, its summary, the commit it records.

The whole suite is rehearsed on the CPU by `bash scripts/maint/gpu_suite.sh --rehearse OUT` (.ci/run
runs it); these are the quick checks around it.
"""

import json
import subprocess
import sys
import time

import pytest
import torch

from conftest import REPO
from fastcifar import env
from fastcifar.engine import DeviceTimer

SUITE = REPO / "scripts" / "maint" / "gpu_suite.sh"


def _suite(*args, **kw):
    return subprocess.run(["bash", str(SUITE), *args], capture_output=True, text=True,
                          cwd=REPO, **kw)


@pytest.mark.parametrize("args, says", [
    ((), "say where the results go"),
    (("--call", "3", "/tmp/x"), "--call takes 1, 2 or all"),
    (("--fast", "/tmp/x"), "unknown option --fast"),
])
def test_suite_refuses_bad_arguments_in_one_line(args, says):
    out = _suite(*args)
    assert out.returncode == 2
    assert out.stderr.strip().startswith("error:") and says in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_plan_names_every_step_of_both_calls():
    plan = _suite("--plan").stdout
    text = SUITE.read_text()
    steps = {line.split()[1] for line in text.splitlines() if line.startswith("step ")}
    calls = [line.split('"')[1].split() for line in text.splitlines()
             if line.startswith(("CALL1=", "CALL2="))]
    assert steps == {"restore", "environment", *calls[0], *calls[1]}
    for name in steps - {"data_check", "gpu_tests"}:  # those two are named in words
        assert name in plan, f"the plan does not say when {name} runs"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA exit")
def test_gpu_mode_without_cuda_stops_after_environment(tmp_path):
    out = _suite(str(tmp_path), env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable,
                                     "GPU_SUITE_WORK": str(tmp_path / "work")})
    assert out.returncode == 2 and "no CUDA device" in out.stdout + out.stderr
    steps = [line.split()[0] for line in (tmp_path / "summary.txt").read_text().splitlines()]
    assert steps == ["restore", "environment", "cuda_check"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["environment"]["gpu"] is None and not summary["all_ok"]


def test_summary_gathers_steps_tests_and_results(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "steps.tsv").write_text("gpu_tests\t1\t80\t110\t\nkernel_bn_relu\t124\t60\t60\t"
                                    "stopped at its 60s limit\n")
    (work / "gpu_tests.xml").write_text(
        '<testsuites><testsuite tests="3" failures="1" errors="0" skipped="1">'
        '<testcase classname="tests.test_a" name="test_ok"/>'
        '<testcase classname="tests.test_a" name="test_bad"><failure message="x"/></testcase>'
        '<testcase classname="tests.test_a" name="test_skip"><skipped/></testcase>'
        '</testsuite></testsuites>')
    (work / "train_throughput-cuda.json").write_text(json.dumps(
        {"environment": {"gpu": "H200"}, "rows": [{"setting": "seed", "images_per_s": 9.5,
                                                   "history": [1, 2]}]}))
    (work / "truncated.json").write_text('{"rows": [')  # a step killed while writing
    target = tmp_path / "summary.json"
    subprocess.run([sys.executable, str(REPO / "scripts" / "maint" / "gpu_summary.py"), str(work),
                    str(target), "--call", "1"], check=True)
    summary = json.loads(target.read_text())
    assert [s["rc"] for s in summary["steps"]] == [1, 124]
    assert summary["steps"][1]["note"] == "stopped at its 60s limit" and not summary["all_ok"]
    assert summary["results"]["gpu_tests"] == {"passed": 1, "failed": 1, "errors": 0,
                                               "skipped": 1,
                                               "failing": ["tests.test_a::test_bad"]}
    assert summary["results"]["train_throughput-cuda"]["rows"] == [
        {"setting": "seed", "images_per_s": 9.5}]
    assert "unreadable" in summary["results"]["truncated"]
    assert summary["data"].startswith("synthetic") and summary["call"] == "1"


def test_commit_comes_from_the_environment_without_git(monkeypatch):
    # the GPU machine's copy of the tree has no .git: the suite exports FASTCIFAR_COMMIT
    def no_git(*args, **kwargs):
        raise OSError("git: not found")

    monkeypatch.setattr(env.subprocess, "run", no_git)
    monkeypatch.setenv("FASTCIFAR_COMMIT", "abc1234")
    assert env.git_commit() == "abc1234"
    monkeypatch.delenv("FASTCIFAR_COMMIT")
    assert env.git_commit() == "unknown"


def test_device_timer_on_the_cpu_is_the_wall_clock():
    timer = DeviceTimer(torch.device("cpu"))
    timer.start()
    time.sleep(0.05)
    assert 0.05 <= timer.stop() < 0.5


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_timer_counts_queued_gpu_work():
    # the host returns at once from a queued kernel; the events still time the kernel
    timer = DeviceTimer(torch.device("cuda"))
    torch.cuda.synchronize()
    start = time.perf_counter()
    timer.start()
    torch.cuda._sleep(200_000_000)  # ~0.1 s of GPU cycles, whatever the clock
    seconds = timer.stop()
    wall = time.perf_counter() - start
    assert seconds > 0.02 and abs(seconds - wall) < 0.02 + 0.1 * wall


def test_the_documented_entry_point_runs_the_suite():
    # scripts/gpu_suite.sh is what a GPU session runs first; the suite lives in scripts/maint/
    entry = subprocess.run(["bash", str(REPO / "scripts" / "gpu_suite.sh"), "--plan"],
                           capture_output=True, text=True, cwd=REPO)
    assert entry.returncode == 0 and entry.stdout == _suite("--plan").stdout
    assert "THE PLAN" in entry.stdout
