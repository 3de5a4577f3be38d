"""Estimate how many Triton compiles ``pytest tests/kernels`` costs on a GPU, without one.

    python scripts/maint/count_kernel_specializations.py [--json PATH] [pytest args ...]

Runs the kernel tests under Triton's interpreter with the tile plan the launchers pick on CUDA
(``K.DEFAULT_PLAN = "cuda"``, so the same constexpr tile sizes), records every launch's
specialisation key and counts the distinct ones. The key is what Triton (3.x) compiles anew for:
the kernel, its constexpr values, num_warps, each pointer's dtype and 16-byte alignment, and each
int argument's class (equal to 1 - then a constant -, divisible by 16, or neither; i32 or i64).
Then it replays the gpu-marked resnet_final test's launches (batch 64, bf16 autocast,
channels_last) without running them. torch.compile's own kernels in that test are not counted.
"""

import argparse
import inspect
import json
import os
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported
import pytest  # noqa: E402
import torch  # noqa: E402
import triton.language as tl  # noqa: E402

from fastcifar.kernels import bn_relu as K  # noqa: E402

KERNELS = [name for name, obj in vars(K).items()
           if name.endswith("_kernel") and type(obj).__name__ == "InterpretedFunction"]


def _arg_class(value, specialize: bool = True):
    if isinstance(value, torch.Tensor):
        return (str(value.dtype), value.data_ptr() % 16 == 0)
    if isinstance(value, bool):
        return "u1"  # bools are not specialised on their value
    if value is None:
        return None
    if isinstance(value, int):
        if not specialize:  # do_not_specialize: only its width matters
            return "i32" if -2**31 <= value < 2**31 else "i64"
        if value == 1:
            return "1"
        return ("i32" if -2**31 <= value < 2**31 else "i64", value % 16 == 0)
    if isinstance(value, float):
        return "fp32"
    return repr(value)


class Recorder:
    """Wraps each kernel's ``run`` (the instance attribute shadows the method) to log keys."""

    def __init__(self, dry: bool = False):
        self.keys: Counter = Counter()
        self.dry = dry
        self._saved = {}

    def install(self):
        for name in KERNELS:
            fn = getattr(K, name)
            params = list(inspect.signature(fn.fn).parameters.values())
            constexpr = {p.name for p in params
                         if p.annotation is tl.constexpr or "constexpr" in str(p.annotation)}
            plain = set(fn.kwargs.get("do_not_specialize") or ())
            original = fn.run
            self._saved[name] = original

            def run(*args, grid, warmup, _name=name, _params=params, _const=constexpr,
                    _plain=plain, _original=original, **kwargs):
                values = dict(zip((p.name for p in _params), args))
                values.update({k: v for k, v in kwargs.items() if k in {p.name for p in _params}})
                key = [_name, ("num_warps", kwargs.get("num_warps", 4))]
                for p in _params:
                    v = values.get(p.name, p.default)
                    key.append((p.name, v if p.name in _const
                                else _arg_class(v, p.name not in _plain)))
                self.keys[tuple(key)] += 1
                if not self.dry:
                    return _original(*args, grid=grid, warmup=warmup, **kwargs)

            fn.run = run

    def uninstall(self):
        for name, original in self._saved.items():
            getattr(K, name).run = original
        self._saved.clear()


class CudaPlanPlugin:
    """pytest plugin: the GPU's tile plan for every launcher call that does not pass tiles."""

    def __init__(self, recorder):
        self.recorder = recorder

    def pytest_sessionstart(self, session):
        K.DEFAULT_PLAN = "cuda"
        self.recorder.install()

    def pytest_sessionfinish(self, session, exitstatus):
        self.recorder.uninstall()
        K.DEFAULT_PLAN = "interpret"


def replay_gpu_test() -> Counter:
    """The launches of test_resnet_final_bf16_autocast_and_compile_on_gpu, recorded, not run."""
    from fastcifar.models import create_model

    recorder = Recorder(dry=True)
    K.DEFAULT_PLAN = "cuda"
    recorder.install()
    try:
        model = create_model("resnet_final", bn_relu="triton").to(memory_format=torch.channels_last)
        x = torch.randn(64, 3, 32, 32).to(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
        out.float().sum().backward()
    finally:
        recorder.uninstall()
        K.DEFAULT_PLAN = "interpret"
    return recorder.keys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the counts here")
    args, pytest_args = parser.parse_known_args(argv)
    recorder = Recorder()
    rc = pytest.main(["-q", "-p", "no:cacheprovider", str(REPO / "tests" / "kernels"),
                      *pytest_args], plugins=[CudaPlanPlugin(recorder)])
    gpu_keys = replay_gpu_test()
    per_kernel = Counter(key[0] for key in recorder.keys)
    total = len(recorder.keys)
    extra = len(set(gpu_keys) - set(recorder.keys))
    print(f"\ndistinct kernel specialisations (estimated CUDA compiles): {total} from the "
          f"tests that run on the CPU, + {extra} for the gpu-marked resnet_final test")
    for name, n in sorted(per_kernel.items()):
        print(f"  {name:24s} {n}")
    print(f"launches: {sum(recorder.keys.values())}")
    if args.json:
        args.json.write_text(json.dumps({
            "total": total, "gpu_test_extra": extra, "per_kernel": dict(per_kernel),
            "keys": sorted(map(repr, recorder.keys)),
            "gpu_test_keys": sorted(map(repr, set(gpu_keys) - set(recorder.keys)))},
            indent=2) + "\n")
    return int(rc)


if __name__ == "__main__":
    sys.exit(main())
