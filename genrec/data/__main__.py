"""``python -m genrec.data stats --data-root DIR --dataset NAME``: dataset statistics as JSON."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass

from genrec.data.errors import DataError
from genrec.utils.cli_args import add_dataclass_flags, flag, given_flags


@dataclass
class StatsArgs:
    """The flags of ``python -m genrec.data stats``."""

    data_root: str = flag("data", "folder holding <dataset>/")
    dataset: str = flag("", "dataset name", required=True)
    text_codes: str | None = flag(None, "explicit text code file")
    image_codes: str | None = flag(None, "explicit image code file")


def _run_stats(ns: argparse.Namespace) -> int:
    from genrec.data.dataset import load_dataset
    from genrec.data.order import order_check

    args = StatsArgs(**given_flags(ns, StatsArgs))
    ds = load_dataset(args.data_root, args.dataset, text_codes=args.text_codes, image_codes=args.image_codes)
    out = ds.stats()
    out["order"] = order_check(ds.sequences, {v: k for k, v in (ds.item2id or {}).items()})
    if out["order"]["warning"]:
        logging.getLogger("genrec.data").warning("%s: %s", ds.dir, out["order"]["warning"])
    print(json.dumps(out, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m genrec.data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    stats = sub.add_parser("stats", help="print users, items, interactions, mean length, modalities and an order "
                                          "check (share of sequences sorted by item id / original id) as JSON; "
                                          "warns when the sequences look sorted by id instead of by time")
    add_dataclass_flags(stats, StatsArgs)
    stats.set_defaults(func=_run_stats)

    from genrec.data.commands import add_commands

    add_commands(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (DataError, FileNotFoundError, ValueError) as e:
        logging.getLogger("genrec.data").error("%s", e)
        return 2


if __name__ == "__main__":
    sys.exit(main())
