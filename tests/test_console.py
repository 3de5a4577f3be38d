"""The command lines as a user meets them: console scripts for every CLI,
--help that lists each choice flag's valid values, --quiet that still prints the result."""

import importlib
import re

import pytest

from conftest import REPO
from fastcifar import train
from fastcifar.data.synthetic import write_synthetic_cifar

SCRIPTS = {"fastcifar-train": "fastcifar.train", "fastcifar-evaluate": "fastcifar.evaluate",
           "fastcifar-sweep": "fastcifar.sweep", "fastcifar-data": "fastcifar.data.__main__",
           "fastcifar-analyze": "fastcifar.analyze", "fastcifar-doctor": "fastcifar.doctor"}


def test_every_cli_is_a_console_script():
    text = (REPO / "pyproject.toml").read_text()  # tomllib is Python 3.11+; this needs 3.10
    section = text.split("[project.scripts]\n", 1)[1].split("\n[", 1)[0]
    scripts = dict(re.findall(r'^([\w-]+) = "([\w.:]+)"$', section, re.M))
    assert {name: target.split(":")[0] for name, target in scripts.items()} == SCRIPTS
    for target in scripts.values():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), target


def test_help_lists_the_valid_values_of_every_choice_flag():
    parser = train.get_args_parser()
    text = parser.format_help()
    with_choices = {a.dest for a in parser._actions if a.choices}
    # the recipe's string knobs with a fixed set of values, and the speed switches
    assert {"scheduler", "augment", "tta", "amp", "channels_last", "compile", "bn_relu",
            "loader", "device", "model", "recipe"} <= with_choices
    for action in parser._actions:
        for value in action.choices or ():
            assert value in text, (action.dest, value)


def test_quiet_prints_only_the_result_line(tmp_path, capsys):
    write_synthetic_cifar(tmp_path / "d", n_train=100, n_test=50, seed=0)
    out = tmp_path / "run"
    assert train.main(["--model", "cnn", "--epochs", "1", "--batch-size", "50", "--quiet",
                       "--device", "cpu", "--no-figures", "--data-dir", str(tmp_path / "d"),
                       "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("final test accuracy "), lines
    assert lines[0].endswith(f"(epoch 1) -> {out}")


@pytest.mark.parametrize("module", sorted(SCRIPTS.values()))
def test_every_cli_has_help(module, capsys):
    with pytest.raises(SystemExit) as exit_:
        importlib.import_module(module).main(["--help"])
    assert exit_.value.code == 0 and "usage:" in capsys.readouterr().out
