"""Gather a GPU suite run into one summary.json: every step's exit code and time, the hardware and
versions, and each step's headline figures with the timing convention beside them.

    python scripts/maint/gpu_summary.py WORK_DIR OUT/summary.json [--mode gpu|rehearse] [--call N]

WORK_DIR is the suite's scratch folder (every step's log and JSON); the steps' exit codes come
from WORK_DIR/steps.tsv (name, rc, seconds, limit, note), which scripts/maint/gpu_suite.sh
appends to.
Safe to run at any point, also after a step was killed: a missing or broken file becomes a note.
"""

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def _load(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        return {"unreadable": f"{path.name}: {err}"}


def steps(work: Path) -> list[dict]:
    rows = []
    table = work / "steps.tsv"
    for line in table.read_text().splitlines() if table.is_file() else []:
        name, rc, seconds, limit, note = (line.split("\t") + [""] * 5)[:5]
        rows.append({"step": name, "rc": int(rc) if rc.lstrip("-").isdigit() else rc,
                     "seconds": int(seconds) if seconds.isdigit() else None,
                     "limit": int(limit) if limit.isdigit() else None, "note": note or None})
    return rows


def junit(path: Path) -> dict:
    """passed/failed/errors/skipped and the failing tests' names from pytest's --junitxml."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as err:
        return {"unreadable": f"{path.name}: {err}"}
    suites = [root] if root.tag == "testsuite" else list(root)
    count = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors",
                                                               "skipped")}
    failing = [f"{case.get('classname')}::{case.get('name')}" for s in suites
               for case in s.iter("testcase")
               if case.find("failure") is not None or case.find("error") is not None]
    return {"passed": count["tests"] - count["failures"] - count["errors"] - count["skipped"],
            "failed": count["failures"], "errors": count["errors"], "skipped": count["skipped"],
            "failing": failing}


def _strip(row: dict) -> dict:
    """A result row without its bulky parts (per-epoch history, printed tables)."""
    return {k: v for k, v in row.items() if k not in ("history", "printed", "speed")}


def headline(work: Path) -> dict:
    out = {}
    for xml in sorted(work.glob("*.xml")):
        out[xml.stem] = junit(xml)
    for path in sorted([*work.glob("*.json"), *work.glob("*/*.json")]):
        name = str(path.relative_to(work).with_suffix(""))
        if path.name in ("config.json", "summary.json") and path.parent != work:
            if path.name == "summary.json":  # a training run's own summary
                s = _load(path)
                out[name] = {k: s.get(k) for k in ("recipe", "final", "thresholds",
                                                   "train_seconds_total", "images_per_s_mean")}
            continue
        if path.name.startswith(("airbench-", "environment")):
            continue
        data = _load(path)
        if "rows" in data:
            data = {**{k: v for k, v in data.items() if k not in ("environment", "rows")},
                    "rows": [_strip(r) for r in data["rows"]]}
        elif "runs" in data:  # time_to_accuracy: its table is the headline
            data = {k: data.get(k) for k in ("recipe", "markdown", "pending_seeds", "timing")}
        else:
            data = {k: v for k, v in data.items() if k != "environment"}
        out[name] = data
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    work, target = Path(argv[0]), Path(argv[1])
    mode = argv[argv.index("--mode") + 1] if "--mode" in argv else "gpu"
    call = argv[argv.index("--call") + 1] if "--call" in argv else "all"
    env = work / "environment.json"
    summary = {
        "mode": mode, "call": call,
        "data": "CIFAR-10 (JPEG q75 copy)" if (work / "REAL_DATA").is_file()
        else "synthetic (no CIFAR-10 staged): accuracies mean nothing, speeds do",
        "environment": _load(env) if env.is_file() else None,
        "steps": steps(work),
        "timing": "every training time is the training steps alone, timed with CUDA events on a "
                  "GPU (synchronised wall clock on the CPU); compile and per-epoch evaluation "
                  "are excluded, as airbench counts",
        "results": headline(work),
    }
    summary["all_ok"] = bool(summary["steps"]) and all(s["rc"] == 0 for s in summary["steps"])
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    tmp.replace(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
