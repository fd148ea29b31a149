"""The one dataclass-to-argparse helper: a flag per config field, typed from its annotation, with
its earlier names (``genrec.utils.fields.RENAMED``) as aliases; only flags actually given reach
the namespace, so a config file or recipe under them keeps its values.

A field's metadata holds its flag's ``help`` and, where a flag needs them, these argparse options:
``choices``, ``required``, ``nargs`` (the values come as separate words, each converted to the
list's element type, instead of one comma-separated word), ``type`` (a converter that replaces the
annotation's, e.g. :func:`at_least`), ``flag`` (the flag's name when it is not ``--field-name``),
``aliases`` (more names) and ``metavar``. :func:`flag` writes such a field."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, Callable, Collection, Mapping

_ARGPARSE_KEYS = ("choices", "required", "nargs", "metavar")


def flag(default: Any = dataclasses.MISSING, help: str = "", **options: Any) -> Any:
    """A dataclass field whose metadata holds its flag's ``help`` and argparse ``options`` (see
    the module docstring); a list default is copied for every instance."""
    metadata = {"help": help, **options}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda d=tuple(default): list(d), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def at_least(low: int) -> Callable[[str], int]:
    """argparse ``type``: an integer ``>= low`` (``argument --x: must be >= 1, got 0`` otherwise)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value
    return parse


def _optional_of(tp: Any) -> Any:
    """``X`` for ``X | None``, else ``tp``."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(tp) if a is not type(None))
    return tp


def _converter(tp: Any) -> tuple[Any, bool]:
    """(argparse ``type``, is_bool) for a field annotation."""
    tp = _optional_of(tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (list, tuple):
        elem = args[0] if args else str
        wrap = list if origin is list else tuple

        def parse(s: str, elem=elem, wrap=wrap):
            try:
                return wrap(elem(x.strip()) for x in s.split(",") if x.strip())
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected comma-separated {elem.__name__} values, got {s!r}") from None
        return parse, False
    if tp is bool:
        return None, True
    return tp, False


def _element(tp: Any) -> Any:
    """The element type of a ``list[X]`` / ``tuple[X, ...]`` annotation (``str`` when bare)."""
    args = typing.get_args(_optional_of(tp))
    return args[0] if args else str


def _shown(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def add_dataclass_flags(parser: argparse.ArgumentParser | Any, cls: type, *, defaults: Any = None,
                        skip: Collection[str] = (), aliases: Mapping[str, tuple[str, ...]] | None = None,
                        group: str | None = None, only: Collection[str] | None = None) -> None:
    """One ``--field-name`` per field of ``cls`` (nested dataclasses skipped); ``defaults``: the
    object whose values the help shows (default: the field defaults); ``only``: just these fields.
    ``parser`` may be anything with ``add_argument``, e.g. a mutually exclusive group."""
    from genrec.utils.fields import RENAMED

    hints = typing.get_type_hints(cls)
    target = parser.add_argument_group(group) if group else parser
    for f in dataclasses.fields(cls):
        if f.name in skip or (only is not None and f.name not in only) or dataclasses.is_dataclass(hints[f.name]):
            continue
        meta = f.metadata
        if "nargs" in meta:
            conv, is_bool = _element(hints[f.name]), False
        else:
            conv, is_bool = _converter(hints[f.name])
        conv = meta.get("type", conv)
        names = [meta.get("flag", "--" + f.name.replace("_", "-")), *meta.get("aliases", ()),
                 *(aliases or {}).get(f.name, ()),
                 *("--" + old.replace("_", "-") for old, new in RENAMED.items() if new == f.name)]
        if defaults is not None:
            default = getattr(defaults, f.name)
        elif f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        text = meta.get("help", "")
        if not meta.get("required"):
            text = f"{text} (default: {_shown(default)})".strip()
        options = {k: meta[k] for k in _ARGPARSE_KEYS if k in meta}
        if is_bool:
            target.add_argument(*names, dest=f.name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=text, **options)
        else:
            target.add_argument(*names, dest=f.name, type=conv, default=argparse.SUPPRESS, help=text, **options)


def given_flags(ns: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of ``cls`` that were given on the command line."""
    return {f.name: getattr(ns, f.name) for f in dataclasses.fields(cls) if hasattr(ns, f.name)}
