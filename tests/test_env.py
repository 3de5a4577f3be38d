"""fastcifar.env: the note scripts/setup.sh prints when nvidia-smi sees a GPU torch cannot use,
and the CPU bf16 detection behind the CPU's auto speed switches."""

import os
import stat

import pytest
import torch

from fastcifar import engine, env

H200 = "NVIDIA H200, 570.124.06\n"


def test_a_gpu_torch_cannot_use_gets_a_hint_naming_another_build():
    hint = env.unusable_gpu_hint(H200, False, "2.14.1+cu130", "13.0")
    assert "NVIDIA H200 (driver 570.124.06)" in hint and "CUDA 13.0" in hint
    assert "older than" in hint and "https://download.pytorch.org/whl/cu126" in hint
    assert "FASTCIFAR_TORCH=" in hint and "dali-cu13" in hint
    cpu_build = env.unusable_gpu_hint(H200, False, "2.13.0+cpu", None)
    assert "CPU-only build" in cpu_build and "FASTCIFAR_TORCH=" in cpu_build


def test_no_hint_when_torch_uses_the_gpu_or_there_is_none():
    assert env.unusable_gpu_hint(H200, True, "2.11.0+cu130", "13.0") is None
    assert env.unusable_gpu_hint("", False, "2.14.1+cu130", "13.0") is None  # no nvidia-smi
    assert env.unusable_gpu_hint("\n", False, "2.14.1+cu130", "13.0") is None


def test_gpu_hint_reads_nvidia_smi(tmp_path, monkeypatch):
    # a stand-in nvidia-smi on PATH, on a machine where torch sees no GPU (as here)
    fake = tmp_path / "nvidia-smi"
    fake.write_text(f"#!/bin/sh\nprintf '{H200.strip()}\\n'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert "NVIDIA H200 (driver 570.124.06)" in env.gpu_hint()
    fake.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    assert env.gpu_hint() is None  # a failing nvidia-smi lists no GPU


# ---- the CPU's native bf16 decides the CPU's auto switches ---------------------------------

SPR = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
COOPER = "flags\t\t: fpu avx2 avx512f avx512_bf16\n"  # AVX512-BF16 without AMX
SKYLAKE = "flags\t\t: fpu sse2 avx2 avx512f avx512bw\n"  # AVX-512, bf16 only emulated
AMX_ONLY = "flags\t\t: fpu avx2 amx_bf16\n"


@pytest.mark.parametrize("cpuinfo, native", [(SPR, True), (COOPER, True), (AMX_ONLY, True),
                                             (SKYLAKE, False), ("", False),
                                             ("model name\t: avx512_bf16 lookalike\n", False)])
def test_cpu_native_bf16_reads_the_flags_line(cpuinfo, native):
    assert env.cpu_native_bf16(cpuinfo) is native


def test_cpu_native_bf16_without_proc_cpuinfo(monkeypatch):
    def missing(self):
        raise FileNotFoundError(self)

    monkeypatch.setattr(env.Path, "read_text", missing)
    assert env.cpu_native_bf16() is False


AUTO = {"amp": "auto", "channels_last": "auto", "compile": "auto", "bn_relu": "auto",
        "cpu_malloc": "auto"}


@pytest.mark.parametrize("native, amp, channels_last", [(True, "bf16", True),
                                                        (False, "off", False)])
def test_cpu_auto_switches_follow_native_bf16(monkeypatch, native, amp, channels_last):
    monkeypatch.setattr(engine, "cpu_native_bf16", lambda: native)
    speed = engine.resolve_switches(AUTO, torch.device("cpu"))
    assert speed == engine.Speed(amp=amp, channels_last=channels_last, compile="off",
                                 bn_relu="eager", cpu_malloc="keep", loader="torch")
    # explicit switches are never overridden
    explicit = AUTO | {"amp": "off", "channels_last": "off"}
    assert engine.resolve_switches(explicit, torch.device("cpu")).amp == "off"
    assert engine.resolve_switches(explicit, torch.device("cpu")).channels_last is False


def test_cpu_malloc_keeps_freed_memory_on_the_cpu_only_when_auto():
    assert engine.resolve_switches(AUTO, torch.device("cpu")).cpu_malloc == "keep"
    assert engine.resolve_switches(AUTO, torch.device("cuda")).cpu_malloc == "default"
    assert engine.resolve_switches(AUTO | {"cpu_malloc": "default"},
                                   torch.device("cpu")).cpu_malloc == "default"
    # a run whose config predates the switch resumes with it on auto
    older = {k: v for k, v in AUTO.items() if k != "cpu_malloc"}
    assert engine.resolve_switches(older, torch.device("cpu")).cpu_malloc == "keep"


def test_keep_freed_memory_stops_large_blocks_from_being_mapped_afresh():
    import resource
    import subprocess
    import sys

    # in a child, since the setting is for the whole process: how many page faults 20
    # allocations of 64 MB (each touched) cost, before and after keep_freed_memory
    script = """
import resource, sys, torch
from fastcifar.env import keep_freed_memory
def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        torch.ones(16 * 2**20)  # 64 MB, filled: every page touched
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
plain = faults()
applied = keep_freed_memory()
faults()  # the first allocation after it grows the heap once
print(applied, plain, faults())
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout.split()
    applied, plain, kept = out[0] == "True", int(out[1]), int(out[2])
    if not applied:
        pytest.skip("this libc has no mallopt")
    pages = 20 * 64 * 2**20 // resource.getpagesize()
    assert plain > pages // 2  # every block mapped and faulted in afresh
    assert kept < plain // 10  # the heap's pages reused


def test_cpu_malloc_benchmark_compares_both_settings(tmp_path):
    import json

    from benchmarks import train_throughput as bench

    assert bench.main(["malloc", "--model", "cnn", "--batches", "8", "--steps", "1",
                       "--warmup", "1", "--rounds", "1", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "cpu_malloc.json").read_text())["rows"]
    assert [(r["batch"], r["cpu_malloc"]) for r in rows] == [(8, "default"), (8, "keep")]
    assert all(r["train_images_per_s"] > 0 and r["eval_images_per_s"] > 0 for r in rows)
    assert rows[-1]["train_speedup"] == round(
        rows[1]["train_images_per_s"] / rows[0]["train_images_per_s"], 2)
    assert bench.main(["malloc", "--batches", "big"]) == 2
