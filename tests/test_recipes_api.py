"""The Recipe checks itself, the CLI's recipe flags come from its fields, fastcifar.fit is what
the CLI runs, every model honours or refuses --bn-relu, and no two modules import each other."""

import ast
import dataclasses
import json
import re
from pathlib import Path

import pytest
import torch

import fastcifar
from conftest import REPO
from fastcifar import train
from fastcifar.data.synthetic import write_synthetic_cifar
from fastcifar.models import create_model, list_models
from fastcifar.recipes import ConfigError, Recipe, RecipeError, get_recipe, knob


@pytest.mark.parametrize("field, value", [
    ("epochs", 0), ("batch_size", -1), ("lr", 0.0), ("momentum", 1.5), ("ema_decay", 1.0),
    ("scheduler", "cosine"), ("tta", "mirror"), ("augment", "sparkles"), ("model", "resnet9"),
    ("model_options", "whitening=off"), ("warmup_fraction", 2.0), ("label_smoothing", -0.1),
])
def test_a_bad_recipe_value_raises_on_construction(field, value):
    base = dict(name="x", model="speedrun")
    with pytest.raises(RecipeError) as err:
        Recipe(**(base | {field: value}))
    assert err.value.field == field and isinstance(err.value, ValueError)
    with pytest.raises(RecipeError):  # replace() builds a new Recipe: checked the same way
        get_recipe("speedrun").replace(**{field: value})


def test_nesterov_needs_momentum():
    with pytest.raises(RecipeError, match="nesterov"):
        Recipe("x", "cnn", momentum=0.0, nesterov=True)


@dataclasses.dataclass(frozen=True)
class WithWarmupEpochs(Recipe):
    warmup_epochs: int = knob(0, "a knob added for this test")


def test_a_field_added_to_recipe_appears_as_a_flag(capsys):
    parser = train.get_args_parser(WithWarmupEpochs)
    args = parser.parse_args(["--model", "cnn", "--warmup-epochs", "3", "--nesterov", "on"])
    recipe = train.resolve_recipe(args, parser, WithWarmupEpochs)
    assert isinstance(recipe, WithWarmupEpochs)
    assert (recipe.warmup_epochs, recipe.nesterov, recipe.name) == (3, True, "row1_cnn")
    assert "a knob added for this test" in parser.format_help()
    with pytest.raises(SystemExit):
        parser.parse_args(["--model", "cnn", "--warmup-epochs", "three"])
    assert "invalid int value" in capsys.readouterr().err


def test_every_recipe_field_is_a_flag():
    options = {o for a in train.get_args_parser()._actions for o in a.option_strings}
    for f in dataclasses.fields(Recipe):  # name and model: --recipe and --model choose them
        assert f"--{f.name.replace('_', '-')}" in options or f.name == "name", f.name
        assert f.name in ("name", "model") or f.metadata.get("help"), f.name


def test_fit_refuses_bad_options_before_any_work(tmp_path):
    missing = tmp_path / "nowhere"  # no data: a refusal must come before loading it
    with pytest.raises(ConfigError, match="epochs"):
        fastcifar.fit("row1_cnn", epochs=0, data_dir=missing, out=tmp_path / "a")
    with pytest.raises(ConfigError, match="amp"):
        fastcifar.fit("row1_cnn", amp="fp8", data_dir=missing, out=tmp_path / "b")
    with pytest.raises(TypeError):
        fastcifar.fit("row1_cnn", no_such_option=1)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_every_model_honours_bn_relu_or_refuses_it():
    for name in list_models():
        with torch.device("meta"):
            eager = create_model(name, bn_relu="eager")
            if any(isinstance(m, torch.nn.BatchNorm2d) and type(m).__name__.endswith("ReLU2d")
                   for m in eager.modules()):
                continue  # it has the seam: tests/test_models.py checks the swap
            with pytest.raises(ValueError, match="no BatchNorm\\+ReLU"):
                create_model(name, bn_relu="triton")


def test_speedrun_refuses_triton_on_the_cli(capsys):
    with pytest.raises(SystemExit) as exit_:
        train.main(["--model", "speedrun", "--bn-relu", "triton", "--no-download",
                    "--data-dir", "nowhere"])
    assert exit_.value.code == 2
    assert "has no BatchNorm+ReLU" in capsys.readouterr().err


def test_fit_returns_what_the_cli_writes(tmp_path):
    data = tmp_path / "data"
    write_synthetic_cifar(data, n_train=120, n_test=40, seed=0)
    common = dict(epochs=2, batch_size=40, train_subset=80, test_subset=40, val_split=20,
                  device="cpu", data_dir=data, quiet=True, figures=False, seed=1)
    result = fastcifar.fit("row2_cnn_aug_plateau", out=tmp_path / "api", **common)
    assert result.status == "finished" and result.epochs_done == 2
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in common.items()
             if k not in ("quiet", "figures")]
    cli = tmp_path / "cli"
    assert train.main(["--recipe", "row2_cnn_aug_plateau", "--out", str(cli), "--quiet",
                       "--no-figures", *flags]) == 0
    for run in (result.out, cli):
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        summary = json.loads((run / "summary.json").read_text())
        assert learned(rows) == learned(result.history)
        assert summary["final"] == result.summary["final"]
        assert summary["thresholds"] == result.summary["thresholds"]
    on_disk = [json.loads(line) for line in (result.out / "metrics.jsonl").read_text().split("\n")
               if line]
    assert on_disk == json.loads(json.dumps(result.history))
    assert json.loads((result.out / "summary.json").read_text()) == json.loads(
        json.dumps(result.summary))
    assert json.loads((result.out / "config.json").read_text())["recipe"] == result.config[
        "recipe"]
    assert set(result.paths) == {"best.pt", "config.json", "last.pt", "metrics.jsonl",
                                 "summary.json"}
    # a keyword left at None is not given, as a flag left out: the recorded seed and folder stay
    more = fastcifar.fit(resume=result.out, epochs=3, out=None, seed=None, val_split=None,
                         quiet=True)
    assert more.status == "finished" and more.epochs_done == 3 and more.out == result.out


def learned(rows):
    keys = ("epoch", "train_loss", "train_acc", "val_acc", "test_loss", "test_acc", "lr")
    return [{k: r[k] for k in keys} for r in rows]


# ---- no import circles ------------------------------------------------------------------------

# no exceptions: kernels/ is a leaf (the fused modules live in fastcifar/models/fused.py)
KNOWN: set[tuple[str, str]] = set()


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[0] == "kernels":
        parts = ["fastcifar", *parts]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, name: str, modules: set[str]) -> set[str]:
    """The project modules ``path`` imports, at the top or inside functions alike."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            # "from . import x" imports the submodule x when there is one, else the package
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                       for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # a.b.func -> a.b
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def test_no_two_modules_import_each_other():
    files = sorted((REPO / "fastcifar").rglob("*.py")) + sorted((REPO / "kernels").rglob("*.py"))
    names = {_module_name(p): p for p in files}
    graph = {n: _imports(p, n, set(names)) - {m for k, m in KNOWN if k == n}
             for n, p in names.items()}

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            node = todo.pop()
            if node == goal:
                return True
            if node not in seen:
                seen.add(node)
                todo.extend(graph.get(node, ()))
        return False

    # a package importing its own submodules (__init__ -> .loader) is how packages are made;
    # any other way back to a module is a circle
    circles = sorted((a, b) for a in graph for b in graph[a]
                     if not b.startswith(a + ".") and reaches(b, a))
    assert circles == []
    assert ("fastcifar.augment.dali", "fastcifar.augment.loader") not in {
        (a, b) for a in graph for b in graph[a]}


@pytest.mark.parametrize("bad, names", [
    ({"amp": "fp8"}, "amp must be one of auto, bf16, fp16, off"),
    ({"loader": "ffcv"}, "loader must be one of"),
    ({"checkpoint_minutes": float("nan")}, "checkpoint_minutes must be a number, not nan"),
    ({"seed": 2**32}, "seed must be in [0, 2**32)"),
    ({"train_subset": 0}, "train_subset must be at least 1"),
    ({"stop_after_steps": -1}, "stop_after_steps must be >= 0"),
])
def test_run_options_check_their_values_for_python_callers_too(bad, names):
    # the CLI's choices never reach these checks: fit() from a notebook relies on them alone
    with pytest.raises(ConfigError, match=re.escape(names)):
        fastcifar.RunOptions(**bad)
