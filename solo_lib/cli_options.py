"""Command-line options generated from the configuration dataclasses (``python -m solo_lib train``).

:class:`~solo_lib.train_config.TrainConfig`, :class:`~solo_lib.data.augment_config.AugmentConfig` and
:class:`~solo_lib.config.SOLOConfig` are the one place where a training setting is defined: its
type (the annotation), its default (the dataclass's, or a recipe's) and its meaning (the
``Attributes:`` entry of the class docstring). :func:`add_options` turns a list of fields into
``argparse`` options from those three, and :func:`config_from_args` builds the configuration back
from the parsed options, so the command line cannot drift from the library: a new field with a
docstring entry is one line here (its option name) away from being an option. The same idea as
TF Model Garden's ``hyperparams`` overrides (``--params_override``), with one typed option per field.

The module imports no TensorFlow: ``--help`` and a mistyped option answer at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import types
import typing


@dataclasses.dataclass(frozen=True)
class Option:
    """One command-line option for one dataclass field.

    Attributes:
        field: the field's name in the dataclass.
        flag: the option, e.g. ``"--lr"``.
        metavar: what the help shows for the value (default: from the type).
        invert: a ``bool`` field whose option sets it to False (``--stream`` for ``in_memory``).
    """

    field: str
    flag: str
    metavar: str | tuple[str, ...] | None = None
    invert: bool = False


def field_docs(cls, rename: dict[str, str] | None = None) -> dict[str, str]:
    """The ``Attributes:`` (or ``Args:``) entries of a dataclass's docstring, as one-paragraph
    plain text per field name (reStructuredText roles and literals unwrapped). ``rename`` maps
    field names to what to call them instead (their options), where an entry mentions them."""
    docs, name, section = {}, None, False
    for line in inspect.cleandoc(cls.__doc__ or "").splitlines():
        stripped = line.strip()
        if stripped in ("Attributes:", "Args:"):
            section, name = True, None
            continue
        if not section:
            continue
        if stripped and not line.startswith("    "):  # a new section header ("Raises:") ends it
            break
        match = re.match(r"^ {4}(\w+): (.*)$", line)
        if match:
            name = match.group(1)
            docs[name] = match.group(2).strip()
        elif name and stripped:
            docs[name] += " " + stripped
    return {k: _plain(v, rename or {}) for k, v in docs.items()}


def _plain(text: str, rename: dict[str, str]) -> str:
    text = re.sub(r"``(\w+)``", lambda m: rename.get(m.group(1), m.group(0)), text)  # ``overwrite`` -> --overwrite
    text = re.sub(r"\b([a-z]+_[a-z_]+)\b", lambda m: rename.get(m.group(1), m.group(0)), text)  # batch_size
    text = re.sub(r":\w+:`~?([^`]+)`", lambda m: m.group(1).split(".")[-1], text)  # :class:`a.b.C` -> C
    text = text.replace("with without ", "without ")  # "with ``in_memory``" where the option is --stream
    return re.sub(r"\bNone\b", "none", text.replace("``", ""))  # what the command line takes


def _type_parts(annotation) -> tuple[type, int | str | None, bool, list | None]:
    """``(element type, argparse nargs, may be None, choices)`` of a field annotation: a fixed-size
    tuple takes that many values, a ``tuple[X, ...]`` any number (at least one when the field may
    instead be None, which ``none`` gives), anything else one value."""
    optional = False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        optional = type(None) in args
        (annotation,) = [a for a in args if a is not type(None)]
    if typing.get_origin(annotation) is typing.Literal:
        choices = list(typing.get_args(annotation))
        return type(choices[0]), None, optional, choices
    if typing.get_origin(annotation) is tuple:
        elements = typing.get_args(annotation)
        if Ellipsis in elements:
            return elements[0], "+" if optional else "*", optional, None
        return elements[0], len(elements), optional, None
    return annotation, None, optional, None


class _NoneGiven:
    """What ``none`` parses to: None itself would read as "option not given"."""

    def __repr__(self):
        return "none"


NONE = _NoneGiven()


def _value_parser(element: type, optional: bool):
    """``argparse`` ``type=`` for one value; ``none`` (any case) means None for a field that allows it."""
    def parse(text: str):
        if optional and text.lower() == "none":
            return NONE
        return element(text)
    parse.__name__ = element.__name__  # argparse names the type in "invalid int value: 'x'"
    return parse


def _shown(value) -> str:
    if isinstance(value, tuple):
        return " ".join(str(v) for v in value) if value else "none"
    return "none" if value is None else str(value)


def add_options(parser, cls, options: list[Option], defaults=None, default_note: str | None = None,
                rename: dict[str, str] | None = None) -> None:
    """Adds one option per entry of ``options`` to ``parser``: type, number of values and choices
    from ``cls``'s annotations, help from its docstring, and the default shown in the help from the
    instance ``defaults`` (``default_note`` in its place when given, e.g. "the preset's"). Field
    names the help mentions are replaced by their options (``options``'s and ``rename``'s).

    The parsed value is None when the option is not given, so that :func:`config_from_args` keeps
    the base configuration's value (which may be a recipe's, not the dataclass default).
    """
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls, {**(rename or {}), **flags(options)})
    for opt in options:
        if opt.field not in hints:
            raise ValueError(f"{cls.__name__} has no field {opt.field!r}")
        if opt.field not in docs:
            raise ValueError(f"{cls.__name__}'s docstring does not describe {opt.field!r}")
        element, nargs, optional, choices = _type_parts(hints[opt.field])
        text = docs[opt.field]
        if default_note is not None:
            text += f" (default: {default_note})"
        elif defaults is not None:
            value = getattr(defaults, opt.field)
            if element is bool:  # the option's own state: an inverted option is off when its field is on
                text += f" (default: {'on' if value != opt.invert else 'off'})"
            else:
                text += f" (default: {_shown(value)})"
        text = text.replace("%", "%%")  # argparse formats help with %
        if element is bool:
            if opt.invert:  # the docstring describes the field, which the option turns off
                text = f"without {opt.flag}: {text[:1].lower()}{text[1:]}"
            parser.add_argument(opt.flag, dest=opt.field, action="store_true", default=None, help=text)
            continue
        kwargs = dict(dest=opt.field, default=None, help=text, type=_value_parser(element, optional))
        if choices is not None:
            kwargs["choices"] = choices
        if nargs is not None:
            kwargs["nargs"] = nargs
        if opt.metavar is not None:
            kwargs["metavar"] = opt.metavar
        parser.add_argument(opt.flag, **kwargs)


def given(args: argparse.Namespace, options: list[Option]) -> dict:
    """The fields whose options were given on the command line, with their values as the dataclass
    takes them (tuples for several values; ``invert`` applied; ``none`` as None)."""
    values = {}
    for opt in options:
        value = getattr(args, opt.field, None)
        if value is None:
            continue
        if opt.invert:
            value = not value
        elif isinstance(value, list):
            value = None if NONE in value else tuple(value)
        elif value is NONE:
            value = None
        values[opt.field] = value
    return values


def config_from_args(base, args: argparse.Namespace, options: list[Option]):
    """``base`` (a dataclass instance) with the fields whose options were given replaced; the
    dataclass validates the result."""
    return dataclasses.replace(base, **given(args, options))


def flags(options: list[Option]) -> dict[str, str]:
    """Field name -> option, for help and error messages that name what the user types (an
    inverted option's field is "without" it: ``in_memory`` -> "without --stream")."""
    return {opt.field: f"without {opt.flag}" if opt.invert else opt.flag for opt in options}
