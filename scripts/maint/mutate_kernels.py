"""Mutation testing of the fused BatchNorm+ReLU kernels: do the kernel tests catch real bugs?

    python scripts/maint/mutate_kernels.py [--workers 2] [--only NAME ...] [--out DIR] [--list]

Each mutant is one realistic bug (a wrong index, an off-by-one mask, eps in the wrong place, ...)
planted in a scratch copy of the tree (a temporary folder: the checkout is never touched). The
kernel tests then run against it under Triton's interpreter, stopping at the first failure: a
mutant is killed by that test, or SURVIVED. Prints the table and the kill rate and writes both
to DIR/mutate_kernels.json and DIR/mutate_kernels.md (default benchmarks/results).

Not in CI: a surviving mutant costs a whole kernel test run (~1 min on 2 cores). Every mutant
that survives must be understood: either a test is missing, or the mutant is equivalent (it
changes no result the project can produce) and its ``harmless`` says why.
tests/kernels/test_bn_relu_compiles.py is left out: it compiles for a GPU in a subprocess that
an editable install points at the unmutated tree, and no mutant here breaks compilation.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COPIED = ["fastcifar", "kernels", "tests", "pyproject.toml"]
BN, AG, FUSED = "kernels/bn_relu.py", "kernels/autograd.py", "fastcifar/models/fused.py"


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    old: str  # must occur in the file; the ``nth`` occurrence (0-based) is replaced
    new: str
    what: str
    nth: int = 0
    harmless: str = ""  # for an equivalent mutant: why no result can change


MUTANTS = [
    # --- the Triton kernels -------------------------------------------------------------------
    Mutant("tile-int32-offsets", BN, "offs = r.to(tl.int64) * s_r", "offs = r * s_r",
           "offsets in int32: wrap past 2**31 elements"),
    Mutant("tile-row-mask-off-by-one", BN, "return offs, (r < R) &", "return offs, (r <= R) &",
           "row mask lets one row past the end through"),
    Mutant("tile-channel-mask-dropped", BN, "& (c < C) & (k < K)", "& (k < K)",
           "no channel mask: lanes past C read and write"),
    Mutant("partial-reads-past-slot", BN,
           "r_hi = tl.minimum(r_lo + rows_per_split, R)", "r_hi = r_lo + rows_per_split",
           "a reduction program's rows not clipped to R (the last, short split)"),
    Mutant("bwd-reads-past-slot", BN,
           "r_hi = tl.minimum(r_lo + rows_per_split, R)", "r_hi = r_lo + rows_per_split",
           "a backward reduction program's rows not clipped to R", nth=1),
    Mutant("partial-count-ignores-k-mask", BN,
           "* tl.minimum(K - k0, BK)).to(tl.float32)", "* BK).to(tl.float32)",
           "block count assumes full H*W blocks"),
    Mutant("partial-unmasked-deviation", BN,
           "d = tl.where(mask, x - shift[None, :, None], 0.0)", "d = x - shift[None, :, None]",
           "masked lanes (x = 0) enter the block's M2"),
    Mutant("partial-chan-delta-term-dropped", BN,
           "m2 += m2_b + delta * delta * (count * n_b / total)", "m2 += m2_b",
           "Chan's merge without the between-block term", nth=0),
    Mutant("partial-wrong-slot", BN, "out = pid_s * C + c\n    tl.store(pmean_ptr",
           "out = pid_s * BC + c\n    tl.store(pmean_ptr",
           "partials stored at the wrong split row"),
    Mutant("partial-fp16-accumulation", BN,
           "x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)\n            n_b",
           "x = tl.load(x_ptr + offs, mask=mask, other=0.0)\n            n_b",
           "statistics accumulate in the storage dtype"),
    Mutant("finalize-first-64-splits-only", BN, "for s0 in range(0, S, BS):\n        s = s0",
           "for s0 in range(0, tl.minimum(S, BS), BS):\n        s = s0",
           "the finalize merge stops after one block of 64 splits"),
    Mutant("finalize-wrong-mean-in-deviation", BN, "dev = mean_p - mean_b[None, :]",
           "dev = mean_p - mean[None, :]", "partials' spread measured about the running mean"),
    Mutant("finalize-bessel-in-normalisation", BN, "var = m2 / count",
           "var = m2 / tl.maximum(count - 1.0, 1.0)", "normalises with the unbiased variance"),
    Mutant("finalize-biased-running-var", BN,
           "unbiased = m2 / tl.maximum(count - 1.0, 1.0)", "unbiased = m2 / count",
           "running variance without Bessel's correction"),
    Mutant("finalize-eps-outside-sqrt", BN, "1.0 / tl.sqrt_rn(var + eps), mask=c_ok",
           "1.0 / tl.sqrt_rn(var) + eps, mask=c_ok", "eps added to invstd, not to the variance"),
    Mutant("finalize-momentum-flipped", BN,
           "rm = (1.0 - momentum) * rm + momentum * mean",
           "rm = momentum * rm + (1.0 - momentum) * mean", "running mean keeps the batch's share"),
    Mutant("apply-eval-eps-dropped", BN, "inv = 1.0 / tl.sqrt_rn(inv + eps)",
           "inv = 1.0 / tl.sqrt_rn(inv)", "eval mode forgets eps"),
    Mutant("apply-mean-indexed-by-program", BN,
           "mean = tl.load(mean_ptr + c, mask=c < C, other=0.0).to(tl.float32)",
           "mean = tl.load(mean_ptr + pid_c, mask=c < C, other=0.0).to(tl.float32)",
           "per-channel mean indexed by program, not channel"),
    Mutant("apply-scale-without-invstd", BN,
           "scale = tl.load(w_ptr + c, mask=c < C, other=0.0).to(tl.float32) * inv",
           "scale = tl.load(w_ptr + c, mask=c < C, other=0.0).to(tl.float32)",
           "the weight is applied without invstd"),
    Mutant("apply-residual-subtracted", BN, "z += tl.load(res_ptr", "z -= tl.load(res_ptr",
           "residual subtracted"),
    Mutant("bwd-mask-from-y-geq", BN, "other=0.0).to(tl.float32) > 0.0",
           "other=0.0).to(tl.float32) >= 0.0", "residual variant's ReLU mask passes y == 0"),
    Mutant("bwd-mask-without-affine", BN, "keep = xhat * w + b > 0.0", "keep = xhat > 0.0",
           "recomputed ReLU mask ignores weight and bias"),
    Mutant("bwd-dresidual-not-stored", BN,
           "tl.store(g_ptr + offs, g.to(g_ptr.dtype.element_ty), mask=mask)", "pass",
           "d residual never written"),
    Mutant("bwd-unmasked-dweight", BN, "sum_gx += _channel_sum(g * xhat)",
           "sum_gx += _channel_sum(dy * xhat)", "dweight sums the grad before the ReLU mask"),
    Mutant("sum-partials-first-64-only", BN,
           "for s0 in range(0, S, BS):\n        s = s0 + tl.arange(0, BS)[:, None]\n"
           "        mask = (s < S) & (c < C)[None, :]",
           "for s0 in range(0, tl.minimum(S, BS), BS):\n        s = s0 + tl.arange(0, BS)"
           "[:, None]\n        mask = (s < S) & (c < C)[None, :]",
           "backward sums only the first 64 splits"),
    Mutant("dx-xhat-term-dropped", BN, "(g - mean_g - xhat * mean_gx)", "(g - mean_g - mean_gx)",
           "dx without the xhat factor"),
    # --- launchers ----------------------------------------------------------------------------
    Mutant("view-wrong-row-stride", BN, "return View3d(n, c, h * w, c * h * w, h * w,",
           "return View3d(n, c, h * w, h * w, h * w,", "NCHW row stride without the channels"),
    Mutant("launcher-residual-layout-kept", BN, "        residual = _same_layout(residual, v)\n",
           "        pass\n", "residual indexed with x's strides in its own layout"),
    Mutant("launcher-dy-layout-kept", BN, "    dy = _same_layout(dy, v)\n", "",
           "upstream grad indexed with x's strides in its own layout"),
    Mutant("launcher-requested-splits", BN,
           "splits, v.C, eps, momentum, int(update),",
           "t.splits, v.C, eps, momentum, int(update),",
           "finalize merges the requested, not the launched, number of splits"),
    Mutant("launcher-count-is-rows", BN, "1.0 / v.count, int(not has_res)",
           "1.0 / v.R, int(not has_res)",
           "dx's means divide by N, not N*H*W"),
    Mutant("launcher-mask-flag-inverted", BN, "1.0 / v.count, int(not has_res)",
           "1.0 / v.count, int(has_res)", "dx recomputes the mask exactly when it must not"),
    Mutant("launcher-stats-swapped", BN, "return y, mean, invstd, new_rm, new_rv",
           "return y, invstd, mean, new_rm, new_rv", "forward returns invstd as the mean"),
    Mutant("launcher-param-grads-swapped", BN,
           "return dx, dweight.to(weight.dtype), dbias.to(bias.dtype), g",
           "return dx, dbias.to(weight.dtype), dweight.to(bias.dtype), g",
           "dweight and dbias swapped"),
    # --- autograd wiring ----------------------------------------------------------------------
    Mutant("autograd-residual-grad-dropped", AG,
           "return dx, dw, db, dres if ctx.has_residual else None, None",
           "return dx, dw, db, None, None", "training backward drops d residual"),
    Mutant("autograd-eval-mask-geq", AG, "g = torch.where(y > 0, dy, 0).float()",
           "g = torch.where(y >= 0, dy, 0).float()", "frozen-BN backward passes y == 0"),
    Mutant("autograd-fp64-to-kernels", AG,
           "    if x.dtype not in K.DTYPES:\n        return False\n", "",
           "kernels_can_run accepts fp64"),
    # --- the drop-in modules ------------------------------------------------------------------
    Mutant("module-running-stats-not-copied", FUSED, "running_mean.copy_(new_rm)", "pass",
           "the module never stores the new running mean"),
    Mutant("module-affine-false-swapped", FUSED,
           "x.new_ones(x.shape[1]), x.new_zeros(x.shape[1])",
           "x.new_zeros(x.shape[1]), x.new_ones(x.shape[1])",
           "affine=False gets weight 0 and bias 1"),
    Mutant("module-batches-not-counted", FUSED, "        bn.num_batches_tracked.add_(1)\n", "",
           "num_batches_tracked never advances"),
    Mutant("module-cumulative-off-by-one", FUSED,
           "factor = 1.0 / float(bn.num_batches_tracked)",
           "factor = 1.0 / (float(bn.num_batches_tracked) + 1.0)",
           "momentum=None averages over one batch too many"),
    Mutant("module-eps-default", FUSED, "running_mean, running_var, factor, bn.eps)",
           "running_mean, running_var, factor, 1e-5)", "training ignores the module's eps"),
    Mutant("module-eval-uses-batch-stats", FUSED,
           "batch_stats = bn.training or (bn.running_mean is None and bn.running_var is None)",
           "batch_stats = True", "eval mode normalises with the batch"),
    Mutant("module-strided-input-passed", FUSED, "        x = x.contiguous()\n", "        pass\n",
           "a strided input goes to the kernels as it is"),
    Mutant("module-residual-demoted", FUSED,
           "x, residual = x.to(dtype), residual.to(dtype)", "residual = residual.to(x.dtype)",
           "a wider residual is rounded to x's dtype"),
    Mutant("module-residual-dtype-unchecked", FUSED,
           "if dtype not in K.DTYPES or not ops.kernels_can_run(x):",
           "if not ops.kernels_can_run(x):",
           "bf16 x with an fp64 residual goes to the kernels"),
]


def _site_packages() -> str:
    return sysconfig.get_paths()["purelib"]


def make_copy(root: Path) -> None:
    for name in COPIED:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, root / name)


def plant(root: Path, m: Mutant) -> None:
    path = root / m.path
    text = path.read_text()
    parts = text.split(m.old)
    if len(parts) <= m.nth + 1:
        raise ValueError(f"mutant {m.name}: {m.old!r} occurs {len(parts) - 1} times in {m.path}")
    path.write_text(m.old.join(parts[:m.nth + 1]) + m.new + m.old.join(parts[m.nth + 1:]))


def run_tests(root: Path, timeout: int, tests: list[str]) -> tuple[str, str, float]:
    """(status, detail, seconds): "passed", or "failed" with the first failing test's id."""
    # -S: no site hooks, so the editable install cannot point fastcifar back at the checkout;
    # the venv's packages come in through PYTHONPATH instead
    env = {**os.environ, "TRITON_INTERPRET": "1",
           "PYTHONPATH": os.pathsep.join([str(root), _site_packages()])}
    # -v: each test's id is printed as it starts, so a crash (a kernel reading far out of
    # bounds can abort the interpreter) still names the test that ran
    cmd = ["nice", "-n", "10", sys.executable, "-S", "-m", "pytest", "-x", "-v", "--tb=no",
           "-rfE", "-p", "no:cacheprovider", *tests,
           "--deselect", "tests/kernels/test_bn_relu_compiles.py"]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return "failed", "timeout", time.perf_counter() - start
    seconds = time.perf_counter() - start
    if proc.returncode == 0:
        return "passed", "", seconds
    found = re.search(r"^(?:FAILED|ERROR) (.+?)(?: - .*)?$", proc.stdout, re.MULTILINE)
    if found:
        return "failed", found.group(1), seconds
    if proc.returncode < 0:  # killed by a signal: the last test that started is the one
        started = re.findall(r"^(tests/\S+::\S.*?)(?: (?:PASSED|SKIPPED|FAILED).*)?$",
                             proc.stdout, re.MULTILINE)
        where = started[-1] if started else "collection"
        return "failed", f"{where} (crashed: signal {-proc.returncode})", seconds
    return "failed", f"rc={proc.returncode}: {proc.stdout[-300:]}", seconds


def check_copy_is_used(root: Path) -> None:
    env = {**os.environ, "TRITON_INTERPRET": "1",
           "PYTHONPATH": os.pathsep.join([str(root), _site_packages()])}
    code = ("import fastcifar.kernels.bn_relu as k, fastcifar.models.fused as f; "
            "print(k.__file__); print(f.__file__)")
    out = subprocess.run([sys.executable, "-S", "-c", code], cwd=root, env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    if not all(Path(p).resolve().is_relative_to(root.resolve()) for p in out):
        raise RuntimeError(f"the scratch copy is not what gets imported: {out}")


def evaluate(m: Mutant | None, timeout: int, tests: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="mutant-") as tmp:
        root = Path(tmp)
        make_copy(root)
        if m is None:
            check_copy_is_used(root)
        else:
            plant(root, m)
        status, detail, seconds = run_tests(root, timeout, tests)
    row = {"mutant": m.name if m else "(none)", "seconds": round(seconds, 1)}
    if m is None:
        return {**row, "status": status, "detail": detail}
    row.update(path=m.path, what=m.what)
    if status == "failed":
        row.update(status="killed", killed_by=detail)
    else:
        row.update(status="SURVIVED", harmless=m.harmless or "UNEXPLAINED")
    return row


def markdown(rows: list[dict], rate: float) -> str:
    lines = ["| mutant | file | bug | result |", "|---|---|---|---|"]
    for r in rows:
        result = (f"killed by `{r['killed_by']}`" if r["status"] == "killed"
                  else f"SURVIVED: {r['harmless']}")
        lines.append(f"| {r['mutant']} | {r['path']} | {r['what']} | {result} |")
    killed = sum(r["status"] == "killed" for r in rows)
    lines.append(f"\nKilled {killed} of {len(rows)}: {rate:.1f} %")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="parallel test runs (<= 2 here)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run just these mutants")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per test run")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--tests", nargs="+", default=["tests/kernels"],
                        help="pytest node ids to run (default: all kernel tests); e.g. to "
                             "check that one test alone kills a mutant")
    args = parser.parse_args(argv)
    mutants = [m for m in MUTANTS if not args.only or m.name in args.only]
    if args.list:
        for m in MUTANTS:
            print(f"{m.name:36s} {m.path:28s} {m.what}")
        return 0
    for m in mutants:  # every mutant must still apply to the code as it is now
        plant_check = (REPO / m.path).read_text().count(m.old)
        if plant_check <= m.nth:
            raise SystemExit(f"mutant {m.name} no longer applies: {m.old!r} not in {m.path}")
    start = time.perf_counter()
    base = evaluate(None, args.timeout, args.tests)
    if base["status"] != "passed":
        raise SystemExit(f"the unmutated tests fail ({base['detail']}): fix them first")
    print(f"baseline: the kernel tests pass unmutated in {base['seconds']} s", flush=True)
    rows = []
    with ThreadPoolExecutor(max_workers=max(1, args.workers)) as pool:
        for row in pool.map(lambda m: evaluate(m, args.timeout, args.tests), mutants):
            rows.append(row)
            result = row.get("killed_by") or f"SURVIVED ({row['harmless']})"
            print(f"{row['mutant']:36s} {row['seconds']:6.1f}s  {result}", flush=True)
    killed = sum(r["status"] == "killed" for r in rows)
    rate = 100 * killed / len(rows)
    print(f"\nkilled {killed} of {len(rows)} mutants: {rate:.1f} % "
          f"({time.perf_counter() - start:.0f} s)")
    if args.tests != ["tests/kernels"]:
        print("(a subset of the tests: results not saved)")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {"kill_rate_percent": round(rate, 1), "killed": killed, "mutants": len(rows),
               "baseline_seconds": base["seconds"], "rows": rows,
               "mutant_definitions": [asdict(m) for m in mutants]}
    (args.out / "mutate_kernels.json").write_text(json.dumps(payload, indent=2) + "\n")
    (args.out / "mutate_kernels.md").write_text(markdown(rows, rate))
    print(f"saved {args.out / 'mutate_kernels.json'} and mutate_kernels.md")
    return 0 if all(r["status"] == "killed" or r["harmless"] != "UNEXPLAINED" for r in rows) \
        else 1


if __name__ == "__main__":
    sys.exit(main())
