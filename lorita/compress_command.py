"""`lorita compress`: its flags, the job spec they make, and running the job locally.

The run keeps its folder's bookkeeping (resume, finished, --force) in run_folder.py;
progress goes to stderr, the Result to stdout as the table or as JSON.
"""

from __future__ import annotations

import argparse
import sys
import time
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
    Truncation,
)
from lorita.cli_terms import dataset_problem
from lorita.progress_view import ProgressView
from lorita.report_table import format_table
from lorita.result_notes import warning_lines
from lorita.run_folder import default_out_dir, plan_run, record_run, remove_checkpoints

# The CLI promises "within half a point"; the confidence margin in the rank search makes
# the drop hold on the test split too, not only on the samples that chose the ranks.
DEFAULT_MAX_ACCURACY_DROP = 0.005


def add_compress(subparsers) -> None:
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
    p.add_argument(
        "--truncation",
        choices=get_args(Truncation),
        help="svd (default): the plain SVD of each weight; data-aware: each weight cut to "
        "keep its layer's output on a sample of the training images",
    )
    p.add_argument("--finetune-epochs", type=int, help="fine-tune the compressed model")
    p.add_argument(
        "--finetune-lr-scales",
        type=_rates,
        metavar="RATES",
        help="comma-separated learning rates of that fine-tuning, as shares of --lr; each "
        "fine-tunes the same cut and the best on the validation split is kept "
        "(default 0.1,1; one value: that rate alone, for half the time)",
    )
    p.add_argument(
        "--finetune-search",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="with strategy accuracy and fine-tuning: hold the tolerance after fine-tuning, "
        "trying smaller models (default: on for the CNNs from scratch, off otherwise)",
    )
    p.add_argument(
        "--distill",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="fine-tuning also matches the uncompressed model's outputs (default: on)",
    )
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
    p.add_argument(
        "--label-smoothing",
        type=float,
        help="0 to <1 (default: the architecture family's; 0 for the FCN, 0.1 for the others)",
    )
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
    "train": (
        "epochs",
        "batch_size",
        "optimizer",
        "lr",
        "weight_decay",
        "schedule",
        "label_smoothing",
        "seed",
    ),
    "compress": (
        "strategy",
        "target",
        "max_accuracy_drop",
        "budget",
        "keep_fraction",
        "truncation",
        "finetune_epochs",
        "finetune_lr_scales",
        "finetune_search",
        "distill",
        "quantize",
        "keep_float",
    ),
}


def _rates(text: str) -> list[float]:
    """'0.1,1' -> [0.1, 1.0]; the spec checks the values."""
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of numbers, e.g. 0.1,1"
        ) from None


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


def _compress(args: argparse.Namespace) -> int:
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
    # torch is imported only now: a mistake in the flags, or a run that already finished,
    # is answered in a fraction of a second instead of after the seconds torch takes.
    from core.pipeline import run_job

    record_run(out_dir, requested)
    view = ProgressView(args.quiet)
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
