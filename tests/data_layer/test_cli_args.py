"""The dataclass-to-argparse helper: what a field's metadata turns into, and what reaches the config."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import pytest

from genrec.utils.cli_args import add_dataclass_flags, at_least, flag, given_flags


@dataclass
class _Args:
    name: str = flag("", "a required name", required=True)
    mode: str = flag("a", "one of two", choices=("a", "b"))
    items: list[str] = flag([], "separate words", nargs="+")
    dims: list[int] = flag([1, 2], "one comma-separated word")
    batch: int = flag(8, "at least one", type=at_least(1))
    src: str = flag("x", "renamed flag", flag="--from")
    k: int = flag(5, "with an alias", aliases=("--min-count",))
    root: Path | None = flag(None, "an optional path")
    quiet: bool = flag(False, "a switch")
    num_threads: int = 1  # RENAMED maps threads -> num_threads


def _parse(argv: list[str]) -> _Args:
    p = argparse.ArgumentParser(exit_on_error=False)
    add_dataclass_flags(p, _Args)
    return _Args(**given_flags(p.parse_args(argv), _Args))


def test_flags_follow_the_field_metadata():
    a = _parse(["--name", "n", "--items", "p", "q", "--dims", "3,4", "--from", "s", "--min-count", "7",
                "--root", "r", "--quiet", "--threads", "2"])
    assert (a.name, a.items, a.dims, a.src, a.k, a.root, a.quiet, a.num_threads) == \
        ("n", ["p", "q"], [3, 4], "s", 7, Path("r"), True, 2)
    d = _parse(["--name", "n"])  # only given flags reach the config: the rest are the field defaults
    assert (d.mode, d.items, d.dims, d.batch, d.src, d.k, d.root, d.quiet) == ("a", [], [1, 2], 8, "x", 5, None, False)
    assert d.items is not _Args(name="m").items  # a list default is fresh per instance


@pytest.mark.parametrize("argv", [[], ["--name", "n", "--mode", "c"], ["--name", "n", "--batch", "0"],
                                  ["--name", "n", "--batch", "two"], ["--name", "n", "--items"]])
def test_bad_flags_are_refused_by_argparse(argv, capsys):
    with pytest.raises((SystemExit, argparse.ArgumentError)):
        _parse(argv)


def test_help_shows_defaults_except_for_required_flags():
    p = argparse.ArgumentParser()
    add_dataclass_flags(p, _Args)
    text = " ".join(p.format_help().split())
    assert "a required name" in text and "a required name (default" not in text
    assert "(default: 1,2)" in text and "(default: 8)" in text
