"""Which of airbench94's parts pay on our race recipe: all of them, none, and all but each one.

    python -m benchmarks.airbench ablation --data-dir data [--seeds 0] [--variants all,none,...]
    python -m benchmarks.airbench ablation --flags all      # print the flags of one variant

Each variant is ``python -m fastcifar.train --recipe speedrun10`` (ABLATION_BASE: the race recipe
without the parts, so variant ``all`` trains race10) plus the flags that switch the parts on
(fastcifar.recipes.AIRBENCH94_PARTS), one run per seed in WORK/<variant>-seed<N>; a finished
run is read, not trained again, and a stopped one is resumed, so the script can be stopped and
started again. Writes benchmarks/results/<--name>.json after every run and prints a table: final
test accuracy (mean over seeds) and the training time as the race counts it (whitening fit +
training + the final TTA pass). A part is worth keeping when removing it costs accuracy at the
same time; one seed resolves about 0.15 points (airbench94's seed spread is ~0.13).
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

from benchmarks.airbench import command
from benchmarks.harness import RESULTS, invocation, print_table, save_result
from fastcifar.launch import UNATTENDED, read_run, start_or_continue, train_in_child
from fastcifar.recipes import ABLATION_BASE, AIRBENCH94_PARTS


def part_flags(part: str) -> dict:
    """The train flags (and model options) that switch ``part`` on: AIRBENCH94_PARTS' Recipe
    fields spelled as the CLI takes them."""
    flags, options = [], []
    for key, value in AIRBENCH94_PARTS[part].items():
        if key == "model_options":
            options.append(value)
        else:
            text = ("on" if value else "off") if isinstance(value, bool) else str(value)
            flags += [f"--{key.replace('_', '-')}", text]
    return {"flags": flags, "options": options}


PARTS = {part: part_flags(part) for part in AIRBENCH94_PARTS}


def variant_parts(name: str) -> list[str]:
    if name == "all":
        return list(PARTS)
    if name == "none":
        return []
    if name.startswith("all-") and name[4:] in PARTS:
        return [p for p in PARTS if p != name[4:]]
    if name.startswith("only-") and name[5:] in PARTS:
        return [name[5:]]
    raise ValueError(f"unknown variant {name!r}: all, none, all-PART or only-PART, with PART "
                     f"one of {', '.join(PARTS)}")


def variant_flags(name: str) -> list[str]:
    parts = variant_parts(name)
    flags = [f for p in parts for f in PARTS[p].get("flags", [])]
    options = [o for p in parts for o in PARTS[p].get("options", [])]
    return flags + (["--model-options", ",".join(options)] if options else [])


def default_variants() -> list[str]:
    return ["all", "none", *(f"all-{p}" for p in PARTS)]


def run_variant(name: str, seed: int, args, work: Path) -> dict:
    out = work / f"{name}-seed{seed}"
    if not (out / "summary.json").is_file():  # stopped earlier: continued
        flags = start_or_continue(
            out, ["--recipe", args.recipe, "--seed", str(seed), *variant_flags(name)])
        code = train_in_child([*flags, "--data-dir", args.data_dir, *UNATTENDED])
        if code != 0:
            return {"variant": name, "seed": seed, "error": f"exit {code}"}
    run = read_run(out)
    return {"variant": name, "seed": seed, "flags": variant_flags(name),
            "test_acc": run.last["test_acc"], "race_seconds": round(run.race_seconds(), 1),
            "test_acc_per_epoch": [h["test_acc"] for h in run.history]}


def earlier_rows(folder: Path, name: str, recipe: str) -> list[dict]:
    """The finished rows of an earlier invocation's JSON (same base recipe), so that a run of
    some variants adds to the table instead of replacing it."""
    path = folder / f"{name}.json"
    if not path.is_file():
        return []
    earlier = json.loads(path.read_text())
    if earlier.get("recipe") != recipe:
        return []
    return [r for r in earlier.get("rows", []) if "error" not in r]


def table(rows: list[dict]) -> list[dict]:
    out = []
    for name in dict.fromkeys(r["variant"] for r in rows):
        done = [r for r in rows if r["variant"] == name and "error" not in r]
        if done:
            accs = [r["test_acc"] for r in done]
            out.append({"variant": name, "seeds": len(done),
                        "test_acc": round(statistics.mean(accs), 2),
                        "std": round(statistics.stdev(accs), 2) if len(accs) > 1 else "",
                        "race_seconds": round(statistics.mean(r["race_seconds"] for r in done))})
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=command("ablation"), description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--recipe", default=ABLATION_BASE,
                        help="the base, with the parts off (default: %(default)s)")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--variants", default=",".join(default_variants()))
    parser.add_argument("--work", default="runs/race_ablation")
    parser.add_argument("--name", default="race_ablation-cpu")
    parser.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    parser.add_argument("--flags", metavar="VARIANT", help="print VARIANT's train flags and stop")
    args = parser.parse_args(argv)
    try:
        if args.flags:
            print(" ".join(variant_flags(args.flags)))
            return 0
        variants = args.variants.split(",")
        for name in variants:
            variant_parts(name)
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    work = Path(args.work)
    rows = earlier_rows(Path(args.out) if args.out else RESULTS, args.name, args.recipe)
    for seed in seeds:
        for name in variants:
            row = run_variant(name, seed, args, work)
            same = [i for i, r in enumerate(rows) if (r["variant"], r["seed"]) == (name, seed)]
            if same:  # an earlier row of this run: replaced where it stood
                rows[same[0]] = row
            else:
                rows.append(row)
            print(f"{name} seed {seed}: {row.get('test_acc', row.get('error'))}",
                  flush=True)
            saved = save_result(args.name, {
                "data_name": "CIFAR-10 (JPEG q75 copy)", "recipe": args.recipe,
                "parts": PARTS, "timing": "race_seconds: whitening fit + training + final TTA "
                "pass (the race's convention), wall clock on the CPU",
                "table": table(rows), "rows": rows}, args.out,
                command=invocation(parser.prog, argv), settings=vars(args))
    print_table(table(rows), ["variant", "seeds", "test_acc", "std", "race_seconds"])
    print(f"saved {saved}")
    return 1 if any("error" in r for r in rows) else 0
