"""Writing a run down: config.json, metrics.jsonl, summary.json, figures, the epoch lines and the
closing summary. Only rank 0 builds a Report; the other ranks train silently.

Each JSON file is replaced whole (temp file, then rename), so a crash never leaves half of one.
"""

import json
import os
from pathlib import Path

import numpy as np

from .data import CLASSES
from .figures import plot_confusion, plot_curves, plot_per_class
from .metrics import per_class_accuracy, threshold_table


class Report:
    """The files and printout of one run in ``out``; ``quiet`` silences the printout only."""

    def __init__(self, out: Path, quiet: bool = False):
        self.out, self.quiet = Path(out), quiet
        self.out.mkdir(parents=True, exist_ok=True)

    def say(self, *parts) -> None:
        if not self.quiet:
            print(*parts)

    def config(self, config: dict) -> None:
        write_json(self.out / "config.json", config)

    def epoch(self, history: list[dict], epochs: int) -> None:
        # rewritten whole from the checkpointed history, so it never runs ahead of last.pt
        rows = "".join(json.dumps(r, default=_jsonable) + "\n" for r in history)
        _replace(self.out / "metrics.jsonl", rows)
        self.say(epoch_line(history[-1], epochs))

    def finish(self, summary: dict, final: dict, history: list[dict], figures: bool) -> None:
        write_json(self.out / "summary.json", summary)
        if figures:
            title = f"{summary['recipe']} ({summary['model']}), CIFAR-10"
            plot_curves(history, self.out / "curves.png", title)
            plot_confusion(final["confusion"], CLASSES, self.out / "confusion.png")
            plot_per_class(per_class_accuracy(final["confusion"]), CLASSES,
                           self.out / "per_class.png")
        if self.quiet:  # the one line a quiet run still owes its user
            print(result_line(summary, self.out))
        else:
            print_summary(summary, self.out)

    def paths(self) -> dict[str, Path]:
        """What the run folder holds, by file name."""
        return {p.name: p for p in sorted(self.out.iterdir()) if not p.name.startswith(".")}


def summarize(recipe, config: dict, history: list[dict], best: dict, select: str,
              final: dict) -> dict:
    """summary.json: the final epoch, the best epochs by test (and validation) accuracy, the
    thresholds' epochs and training times, and the final per-class accuracy."""
    last = history[-1]
    by_test = max(history, key=lambda h: h["test_acc"])
    summary = {
        "recipe": recipe.name, "model": recipe.model, "parameters": config["model_parameters"],
        "epochs": last["epoch"], "device": config["device"],
        "final": {"epoch": last["epoch"], "test_acc": last["test_acc"],
                  "val_acc": last.get("val_acc")},
        # the report's number: the best epoch by test accuracy (optimistic, chosen on the test set)
        "best_by_test": {"epoch": by_test["epoch"], "test_acc": by_test["test_acc"],
                         "note": "epoch chosen on the test set, as the report did"},
        "thresholds": threshold_table(history),
        "threshold_note": "first epoch whose test accuracy reached each threshold; seconds are "
                          "training time only (evaluation excluded)",
        "train_seconds_total": last["train_seconds_total"],
        "eval_seconds_total": sum(h["eval_seconds"] for h in history),
        "images_per_s_mean": float(np.mean([h["images_per_s"] for h in history])),
        "final_per_class_acc": dict(zip(CLASSES, per_class_accuracy(final["confusion"]).tolist())),
    }
    if select == "val_acc":
        summary["best_by_val"] = {"epoch": best["epoch"], "val_acc": best["val_acc"],
                                  "test_acc": best["test_acc"],
                                  "note": "epoch chosen on the validation split (honest)"}
    return summary


def epoch_line(record: dict, epochs: int) -> str:
    val = f" val {record['val_acc']:.2f}%" if "val_acc" in record else ""
    return (f"epoch {record['epoch']:3d}/{epochs}  train loss {record['train_loss']:.4f} "
            f"acc {record['train_acc']:.2f}%{val}  test loss {record['test_loss']:.4f} "
            f"acc {record['test_acc']:.2f}%  lr {record['lr']:.2g}  "
            f"{record['train_seconds']:.1f}s ({record['images_per_s']:.0f} img/s)")


def result_line(summary: dict, out: Path) -> str:
    f = summary["final"]
    val = f", validation {f['val_acc']:.2f}%" if f.get("val_acc") is not None else ""
    return f"final test accuracy {f['test_acc']:.2f}% (epoch {f['epoch']}){val} -> {out}"


def print_summary(summary: dict, out: Path) -> None:
    f = summary["final"]
    print(f"\nfinal test accuracy {f['test_acc']:.2f}% (epoch {f['epoch']})"
          + (f", validation {f['val_acc']:.2f}%" if f.get("val_acc") is not None else ""))
    if "best_by_val" in summary:
        b = summary["best_by_val"]
        print(f"best epoch by validation: {b['epoch']} (val {b['val_acc']:.2f}%, "
              f"test {b['test_acc']:.2f}%)")
    b = summary["best_by_test"]
    print(f"best epoch by test accuracy (chosen on the test set, as the report did): "
          f"{b['epoch']} ({b['test_acc']:.2f}%)")
    print("benchmarks (training time only, evaluation excluded):")
    for row in summary["thresholds"]:
        reached = (f"epoch {row['epoch']:3d}, {row['train_seconds']:8.1f} s" if row["epoch"]
                   else "not reached")
        print(f"  {row['threshold']:.0f} %: {reached}")
    print(f"outputs in {out}")


def write_json(path: Path, payload) -> None:
    _replace(path, json.dumps(payload, indent=2, default=_jsonable) + "\n")


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as err:
        err.filename = str(path)  # the file meant, not its temp file
        raise
    finally:  # a failed write (a full disk) leaves the old file, and no .tmp beside it
        tmp.unlink(missing_ok=True)


def _jsonable(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
