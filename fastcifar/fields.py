"""Declared settings, without torch: the ``knob`` field a --flag is made from, the on/off
words every flag and model option understands, and the errors a bad value raises."""

from dataclasses import field


class ConfigError(ValueError):
    """A recipe or run option that cannot work, found before any data loads; the CLI turns it
    into a usage error (exit 2)."""


class RecipeError(ConfigError):
    """A bad value of one Recipe field or run option; ``field`` names it (the CLI shows it as
    --field)."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}{'' if reason.startswith(':') else ' '}{reason}")
        self.field, self.reason = field, reason


def knob(default, help: str, **metadata):
    """A Recipe field with its --flag's help (and optionally ``choices``): the CLI builds every
    override flag from these, so a new knob is one field plus its use."""
    return field(default=default, metadata={"help": help, **metadata})


_ON_OFF = {"on": True, "true": True, "off": False, "false": False}
_DIGITS = {"1": True, "0": False}


def on_off(text: str, digits: bool = True) -> bool:
    """on/true/1 -> True, off/false/0 -> False (any case); ValueError otherwise. A model
    option's 1 is a number: there ``digits=False``."""
    words = _ON_OFF | (_DIGITS if digits else {})
    if text.lower() not in words:
        raise ValueError(f"expected on or off, not {text!r}")
    return words[text.lower()]
