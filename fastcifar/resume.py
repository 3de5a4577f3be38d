"""One rule for --resume: every run option is either honoured (and config.json says so) or
refused with the reason. The run's own settings, recorded in its config.json, are what make its
numbers; a different value of one of them would be another run."""

import dataclasses
from pathlib import Path

from .data import DataError
from .recipes import ConfigError, Recipe

# options a resumed run takes from its config.json; a different value given is refused
RECORDED = ("seed", "val_split", "train_subset", "test_subset", "loader")


def recorded(config: dict) -> dict:
    """The options that made the run: its seed, data selection and speed switches."""
    return {k: config.get(k) for k in RECORDED} | dict(config.get("switches", {}))


def resumed(state: dict, recipe, overrides: dict, options, given: dict):
    """(recipe, config, options) of the run that ``state`` (its last.pt) continues.

    ``overrides``: the Recipe fields asked for (only ``epochs`` may change, and never below
    the epochs done); ``given``: the options the caller named, checked against the record."""
    if recipe is not None or set(overrides) - {"epochs"}:
        raise ConfigError("--resume continues a run with its own settings; drop "
                          f"{_flags(sorted(set(overrides) - {'epochs'})) or 'the recipe'}")
    config, out = state["config"], Path(options.resume)
    differ = {k: v for k, v in given.items() if k in recorded(config) and v != recorded(config)[k]}
    if differ:
        name, value = next(iter(differ.items()))
        was = recorded(config)[name]
        made = f"with --{_flag(name)} {was}" if was is not None else f"without --{_flag(name)}"
        raise ConfigError(f"--resume {out} continues a run made {made}; drop --{_flag(name)} "
                          f"{value} (another value is another run: start it with --out instead)")
    done = state["epoch"]
    if overrides.get("epochs", done) < done:
        raise ConfigError(f"--epochs {overrides['epochs']} is fewer than the {done} epochs "
                          f"{out} has done; leave --epochs out, or give {done} or more")
    config["recipe"] |= overrides
    figures = given.get("figures", config.get("figures", True))
    config["figures"] = figures  # remembered: a later resume keeps it
    options = dataclasses.replace(options, figures=figures,
                                  data_dir=options.data_dir or _data_dir(config, out))
    return Recipe(**config["recipe"]), config, options


def _data_dir(config: dict, out: Path) -> str | None:
    """The run's recorded data folder; a folder moved since is named, with the fix."""
    folder = config.get("data_dir")
    if folder and not Path(folder).is_dir():
        raise DataError(f"the data folder of {out}, {folder} (recorded in its config.json), is "
                        "gone; point at CIFAR-10 with --resume "
                        f"{out} --data-dir DIR (--resume does not read FASTCIFAR_DATA)")
    return folder


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _flags(names: list[str]) -> list[str]:
    return [f"--{_flag(n)}" for n in names]
