"""The commands that run or administer the service: `lorita serve`, `lorita worker`,
`lorita token create|list|revoke` and `lorita migrate`.

Each imports its part of the service when it runs, so the other commands do not load it.
"""

from __future__ import annotations

import argparse
import sys


def add_service(subparsers) -> None:
    serve = subparsers.add_parser("serve", help="run the API, dashboard and one worker")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--no-browser", action="store_true", help="do not open the dashboard")
    serve.set_defaults(handler=_serve)

    worker = subparsers.add_parser("worker", help="run a worker that trains queued jobs")
    worker.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    worker.add_argument("--hostname", help="worker node name (default: unique per process)")
    worker.add_argument("--loglevel", help="DEBUG, INFO or WARNING")
    worker.set_defaults(handler=_worker)

    token = subparsers.add_parser("token", help="API tokens")
    token_actions = token.add_subparsers(dest="action", required=True)
    create = token_actions.add_parser("create", help="create a token for user NAME")
    create.add_argument("name")
    create.add_argument(
        "--add", action="store_true", help="give a user who has a token already another one"
    )
    create.set_defaults(handler=_token_create)
    listing = token_actions.add_parser("list", help="list tokens (of user NAME)")
    listing.add_argument("name", nargs="?", help="only this user's tokens")
    listing.set_defaults(handler=_token_list)
    revoke = token_actions.add_parser("revoke", help="delete a token (its id or prefix)")
    revoke.add_argument("token", help="the id or prefix that `lorita token list` shows")
    revoke.set_defaults(handler=_token_revoke)

    migrate = subparsers.add_parser("migrate", help="upgrade the database schema")
    migrate.set_defaults(handler=_migrate)


def _serve(args: argparse.Namespace) -> int:
    from api.serve import run_serve

    run_serve(host=args.host, port=args.port, open_browser=not args.no_browser)
    return 0


def _worker(args: argparse.Namespace) -> int:
    from worker.main import run_worker

    run_worker(device=args.device, hostname=args.hostname, loglevel=args.loglevel)
    return 0


def _token_create(args: argparse.Namespace) -> int:
    from store.tokens import TokenExists, create_token_cli

    try:
        create_token_cli(args.name, add=args.add)
    except TokenExists as error:
        print(f"lorita: {error}", file=sys.stderr)
        return 1
    return 0


def _token_list(args: argparse.Namespace) -> int:
    from store.tokens import list_tokens_cli

    list_tokens_cli(args.name)
    return 0


def _token_revoke(args: argparse.Namespace) -> int:
    from store.tokens import revoke_token_cli

    return 0 if revoke_token_cli(args.token) else 1


def _migrate(_args: argparse.Namespace) -> int:
    from store.migrate import upgrade_to_head

    upgrade_to_head()
    print("database schema is up to date")
    return 0
