"""One rule for --resume: every run option is either honoured (and config.json says so) or
refused with the reason. The run's own settings, recorded in its config.json, are what make its
numbers; a different value of one of them would be another run."""

import dataclasses
from pathlib import Path

from .data import DataError
from .options import FIELDS, NEW_RUN, RECORDED, SWITCHES, resume_rule
from .recipes import ConfigError, Recipe


def recorded(config: dict) -> dict:
    """The options that made the run, as its config.json holds them: its seed, data selection
    and speed switches as asked (options.RECORDED; an option older runs lack is left out)."""
    values = {name: (config.get("switches", {}) if name in SWITCHES else config).get(name, ...)
              for name in FIELDS if resume_rule(name) == RECORDED}
    return {name: value for name, value in values.items() if value is not ...}


def check_request(recipe, overrides: dict, given: dict) -> None:
    """Before anything is read: a resumed run takes no recipe, no Recipe field but ``epochs``
    and no option that names a new run (``given``: the options named)."""
    extra = [name for name in overrides if name != "epochs"] + \
        [name for name in given if name in FIELDS and resume_rule(name) == NEW_RUN]
    if recipe is not None or extra:
        named = ["--model/--recipe"] * (recipe is not None) + [f"--{_flag(n)}" for n in extra]
        raise ConfigError(f"--resume continues a run with its own settings; drop "
                          f"{', '.join(named)}")


def resumed(state: dict, overrides: dict, options, given: dict):
    """(recipe, config, options) of the run that ``state`` (its last.pt) continues, after
    ``check_request``: ``overrides`` may hold ``epochs``, never below the epochs done;
    ``given``: the options the caller named, each checked against its rule
    (options.resume_rule)."""
    config, out = state["config"], Path(options.resume)
    was = recorded(config)
    differ = {k: v for k, v in given.items() if k in was and v != was[k]}
    if differ:
        name, value = next(iter(differ.items()))
        made = f"with --{_flag(name)} {was[name]}" if was[name] is not None \
            else f"without --{_flag(name)}"
        raise ConfigError(f"--resume {out} continues a run made {made}; drop --{_flag(name)} "
                          f"{value} (another value is another run: start it with --out instead)")
    done = state["epoch"]
    if overrides.get("epochs", done) < done:
        raise ConfigError(f"--epochs {overrides['epochs']} is fewer than the {done} epochs "
                          f"{out} has done; leave --epochs out, or give {done} or more")
    config["recipe"] |= overrides
    figures = given.get("figures", config.get("figures", True))  # options.REMEMBERED
    config["figures"] = figures
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
