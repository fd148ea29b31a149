"""Extra ``python -m genrec.data`` sub-commands (prepare raw dumps, make the synthetic default).

Each sub-command registers itself with ``add_commands``; it sets ``func`` to a callable returning
an exit code.
"""

from __future__ import annotations

import argparse
import importlib


def add_commands(sub: argparse._SubParsersAction) -> None:
    for module in ("genrec.data.prepare", "genrec.data.synthetic", "genrec.data.p5_titles", "genrec.data.node_codes"):
        importlib.import_module(module).add_command(sub)
