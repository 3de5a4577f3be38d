"""What the command lines share: flags made from dataclass fields (the Recipe's knobs, RunOptions),
the data flags, and a ConfigError turned into a usage error (exit 2).

A field becomes ``--field-name``, typed by its annotation, with its metadata's help, ``choices``
and ``metavar``; a bool field whose metadata spells its ``flag`` (``--quiet``, ``--no-figures``)
becomes that flag alone, setting the field to the other value. Every default is None, which
means "not given": the dataclass keeps the default, so every default lives in one place.
"""

import argparse
import dataclasses
import types
from collections.abc import Iterable
from pathlib import Path

from .fields import ConfigError, RecipeError, on_off
from .options import GROUPS, RunOptions


def flag(f: dataclasses.Field) -> str:
    """The command-line spelling of field ``f``."""
    return f.metadata.get("flag") or f"--{f.name.replace('_', '-')}"


def _parse_on_off(text: str) -> bool:
    try:
        return on_off(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _value_type(f: dataclasses.Field):
    """int, float or str from an annotation such as ``int | None`` or ``str | Path | None``."""
    kinds = [t for t in (f.type.__args__ if isinstance(f.type, types.UnionType) else (f.type,))
             if t is not type(None)]
    return str if Path in kinds else kinds[0]


def add_flags(parser, cls: type, skip: Iterable[str] = (), groups: Iterable[str] | None = None,
              show_default: bool = False) -> None:
    """One flag per field of dataclass ``cls`` (but ``skip``), into ``parser`` or, where a field's
    metadata names a ``group`` (RunOptions: options.GROUPS), into that group; ``groups``: only
    the fields of these groups."""
    made = {}
    for f in dataclasses.fields(cls):
        group_name = f.metadata.get("group")
        if f.name in skip or (groups is not None and group_name not in groups):
            continue
        if group_name and group_name not in made:
            made[group_name] = parser.add_argument_group(GROUPS[group_name])
        target = made[group_name] if group_name else parser
        help_text = f.metadata.get("help", f.name)
        if show_default:
            help_text += f" (recipe default: {f.default})"
        if f.type is bool and "flag" in f.metadata:  # --quiet, --no-figures: not the default
            target.add_argument(flag(f), dest=f.name, action="store_const", const=not f.default,
                                default=None, help=help_text)
        else:  # a value; a Recipe's bool takes on|off, since a recipe may have it either way
            boolean = f.type is bool
            target.add_argument(flag(f), dest=f.name, default=None,
                                type=_parse_on_off if boolean else _value_type(f),
                                choices=f.metadata.get("choices"),
                                metavar="on|off" if boolean else f.metadata.get("metavar"),
                                help=help_text)


def add_data_flags(parser) -> None:
    """--data-dir and --no-download, as every fastcifar command takes them."""
    add_flags(parser, RunOptions, groups=("data",))


def given(args: argparse.Namespace, cls: type, skip: Iterable[str] = ()) -> dict:
    """The fields of ``cls`` the command line named (a flag left out is None)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
            if f.name not in skip and getattr(args, f.name, None) is not None}


def data_options(args: argparse.Namespace) -> dict:
    """load_cifar10's data_dir and download, from the data flags."""
    return {"data_dir": args.data_dir, "download": args.download is not False}


def as_argv(cls: type, values: dict) -> list[str]:
    """The flags that give ``values`` (fields of ``cls``): the inverse of parsing them."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    argv = []
    for name, value in values.items():
        f = fields[name]
        if f.type is bool and "flag" in f.metadata:
            argv += [flag(f)] if value != f.default else []
        else:
            argv += [flag(f), ("on" if value else "off") if f.type is bool else str(value)]
    return argv


def usage_message(err: ConfigError) -> str:
    """A ConfigError in the command line's words: a RecipeError names its --flag."""
    if isinstance(err, RecipeError):  # "--val-split must be >= 0, not -5"
        return f"--{err.field.replace('_', '-')}{str(err)[len(err.field):]}"
    return str(err)
