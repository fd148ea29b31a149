"""The one dataclass-to-argparse helper: a flag per config field, typed from its annotation, with
its earlier names (``genrec.utils.fields.RENAMED``) as aliases; only flags actually given reach
the namespace, so a config file or recipe under them keeps its values."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, Collection, Mapping


def _converter(tp: Any) -> tuple[Any, bool]:
    """(argparse ``type``, is_bool) for a field annotation."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return _converter(next(a for a in args if a is not type(None)))
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


def _shown(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def add_dataclass_flags(parser: argparse.ArgumentParser | Any, cls: type, *, defaults: Any = None,
                        skip: Collection[str] = (), aliases: Mapping[str, tuple[str, ...]] | None = None,
                        group: str | None = None, only: Collection[str] | None = None) -> None:
    """One ``--field-name`` per field of ``cls`` (nested dataclasses skipped); ``defaults``: the
    object whose values the help shows (default: the field defaults); ``only``: just these fields."""
    from genrec.utils.fields import RENAMED

    hints = typing.get_type_hints(cls)
    target = parser.add_argument_group(group) if group else parser
    for f in dataclasses.fields(cls):
        if f.name in skip or (only is not None and f.name not in only) or dataclasses.is_dataclass(hints[f.name]):
            continue
        conv, is_bool = _converter(hints[f.name])
        names = ["--" + f.name.replace("_", "-"), *(aliases or {}).get(f.name, ()),
                 *("--" + old.replace("_", "-") for old, new in RENAMED.items() if new == f.name)]
        if defaults is not None:
            default = getattr(defaults, f.name)
        elif f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        text = f"{f.metadata.get('help', '')} (default: {_shown(default)})".strip()
        if is_bool:
            target.add_argument(*names, dest=f.name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=text)
        else:
            target.add_argument(*names, dest=f.name, type=conv, default=argparse.SUPPRESS, help=text)


def given_flags(ns: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of ``cls`` that were given on the command line."""
    return {f.name: getattr(ns, f.name) for f in dataclasses.fields(cls) if hasattr(ns, f.name)}
