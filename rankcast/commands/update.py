"""`rankcast update build`: train a factorised update for a PyTorch model and write UPDATE.rcu."""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

#: At most about this many epoch lines per training on stderr (a size search runs many trainings).
_EPOCH_LINES = 20
_SEARCH_EPOCH_LINES = 4


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "update",
        help="build factorised model updates",
        description="Build an update: the deployed weights stay frozen and each Linear/Conv2d layer becomes "
        "W + U·V. By default the larger factor is fixed signs from a seed and only the smaller one is trained "
        "and sent, as ternary codes; the update is written with what publishing needs.",
    )
    actions = parser.add_subparsers(title="actions", metavar="ACTION", required=True)
    build = actions.add_parser(
        "build",
        help="train an update and write UPDATE.rcu",
        description="By default the update is the smallest that comes within --within points (1) of a full "
        "fine-tune, both measured on a validation split carved from TRAIN.npz: budgets double from 128 bytes, "
        "each tried seeded and then as U·V, until one reaches it (--rank or --budget choose the size yourself). "
        "Shows each training on stderr, then what it built: bytes, ranks, and the accuracy on "
        "EVAL.npz before and after, measured on the model a device rebuilds. TRAIN.npz and EVAL.npz hold x "
        "(float32, one example a row: N×F or N×C×H×W, or the layout of a --deployed .tflite imported without "
        "--arch) and y (integer class labels); README.md shows how to make "
        "them. With --out-weights and --out-model the next update builds on this one; with --store it is "
        "recorded as the next version of --model, and --base and --deployed default to the latest one there.",
    )
    build.add_argument("--arch", metavar="MODULE:FACTORY",
                       help="function of no arguments that builds the nn.Module; MODULE is looked for in the "
                       "current directory, then on PYTHONPATH (leave it out, and --base too, to import the model "
                       "from the --deployed .tflite file's own graph: `rankcast import-tflite`)")
    build.add_argument("--base", type=Path, metavar="BASE.pt",
                       help="state_dict of the deployed model: torch.save(model.state_dict(), 'BASE.pt') (default "
                       "with --store: the latest version's)")
    build.add_argument("--train", required=True, type=Path, metavar="TRAIN.npz", help="arrays x and y to train on")
    build.add_argument("--eval", required=True, type=Path, metavar="EVAL.npz", help="arrays x and y to measure on")
    size = build.add_mutually_exclusive_group()
    size.add_argument(
        "--within", type=float, metavar="PTS",
        help="points of validation accuracy the update may lose against a full fine-tune (the best of lr 1e-3, "
        "3e-3 and 1e-2) on the same split, its accuracy less one standard error (default 1; docs/method.md)",
    )
    size.add_argument("--target-accuracy", type=float, metavar="ACC",
                      help="the validation accuracy to reach instead, as a fraction (0.95): no reference fine-tune")
    size.add_argument("--rank", type=int, help="one rank for every layer, no search")
    size.add_argument(
        "--budget", type=int, metavar="BYTES",
        help="largest payload: the largest ranks that fit, more on layers whose rank is cheap, the widest "
        "layers only once they get 7 (with --both-factors: ranks per layer from a short fine-tune's spectrum)",
    )
    build.add_argument(
        "--max-bytes", type=int, metavar="BYTES",
        help="the largest update the search tries before it refuses (default a tenth of the full model)",
    )
    build.add_argument(
        "--no-refit", action="store_true",
        help="ship the chosen candidate as measured on the validation split (trained on the rest) instead of "
        "its ranks trained again on all of TRAIN.npz",
    )
    build.add_argument(
        "--both-factors", action="store_true",
        help="train and send U and V, the paper's form: more bytes for the same accuracy on narrow layers "
        "(docs/method.md); --lr 1e-2 suits it; the search then tries only this form",
    )
    build.add_argument(
        "--codes", choices=("trit", "b1", "i4", "i8"), default="trit",
        help="codes of the sent factors: trit (-1/0/+1, 1.6 bits; default), b1 (signs, 1 bit), i4 or i8",
    )
    build.add_argument(
        "--train-biases", action="store_true",
        help="also train every bias and norm parameter, sent as small dense i8 records (batch norm is folded into "
        "the layer before it, so its shift is that layer's bias); budgets count them",
    )
    build.add_argument("--epochs", type=int, default=20, help="training epochs, all on the codes devices receive")
    build.add_argument("--lr", type=float,
                       help="Adam learning rate of the factors (default 3e-2 seeded, 1e-2 with both factors)")
    build.add_argument("--deployed", type=Path, metavar="FILE",
                       help="the model file devices run (.rcw or .tflite): pins the update's base and target, "
                       "which publishing needs (default with --store: the latest version's)")
    build.add_argument("--store", type=Path, metavar="DIR",
                       help="a release store (`rankcast release init`): build on the latest version of --model "
                       "and record the result as the next one, with its weights, model file and update")
    build.add_argument("--model", metavar="ID", help="with --store: the model id")
    build.add_argument("--out", type=Path, metavar="UPDATE.rcu",
                       help="the update to write, for `rankcast publish --update` (default with --store: inside it)")
    build.add_argument("--out-weights", type=Path, metavar="FILE.pt",
                       help="also write the updated state_dict (W + U·V, exactly as devices apply it): the next "
                       "update's --base")
    build.add_argument("--out-model", type=Path, metavar="FILE",
                       help="also write the --deployed file with the update applied: the next update's --deployed")
    build.add_argument("--json", action="store_true",
                       help="print one JSON line {accuracy_before, accuracy_after, update_bytes, full_model_bytes, "
                       "and after a search validation: {examples, target, accuracy, bound, form, trainings, "
                       "reference, reference_lr, reference_eval}} instead of the summary (the trainings still go "
                       "to stderr)")
    build.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json

    from publisher.training.factorised import FactorConfig
    from publisher.training.from_files import build_from_files, summary

    started = time.monotonic()
    stored = _from_store(args)
    target = _target(args)
    result = build_from_files(
        arch=args.arch, base=args.base, train=args.train, evaluate=args.eval, out=args.out,
        rank=args.rank, budget=args.budget, epochs=args.epochs, lr=args.lr, deployed=args.deployed,
        factors=FactorConfig(dtype=args.codes, seeded=not args.both_factors, train_small=args.train_biases),
        target=target, out_weights=args.out_weights, out_model=args.out_model,
        progress=_EpochLog(_SEARCH_EPOCH_LINES if target is not None else _EPOCH_LINES),
    )
    if stored is not None:
        stored = stored.record(args)
    if args.json:
        print(json.dumps(summary(result)))
    else:
        print(_summary(args, result, time.monotonic() - started))
        if stored is not None:
            print(f"  recorded as version {stored.version} of {stored.model} in {args.store} (publish it with "
                  f"`rankcast publish --store {args.store} --model {stored.model}`)")
    return 0


def _target(args: argparse.Namespace):
    """What the size search must reach, or None when --rank or --budget fixes the size (and no search option
    was given: build_from_files refuses --max-bytes beside them)."""
    from publisher.training.targeted import DEFAULT_WITHIN, Target

    options = (args.within, args.target_accuracy, args.max_bytes, args.no_refit or None)
    if args.rank is not None or args.budget is not None:
        if all(option is None for option in options):
            return None
    return Target(within=DEFAULT_WITHIN if args.within is None else args.within, accuracy=args.target_accuracy,
                  max_bytes=args.max_bytes, forms=(False,) if args.both_factors else (True, False),
                  refit=not args.no_refit)


class _StoreBuild:
    """An update built on the latest version of a model in a release store, recorded as the next one."""

    def __init__(self, store, latest, scratch: Path, defaulted: list[str]) -> None:
        self.store, self.latest, self.scratch, self.defaulted = store, latest, scratch, defaulted

    def record(self, args: argparse.Namespace):
        """Add the build to the store; the outputs that went to scratch space are named by their stored copy."""
        import shutil

        stored = self.store.add(self.latest.model, self.latest.version + 1, args.out_model, parent=self.latest.version,
                                weights=args.out_weights, update=args.out)
        names = {"out": stored.update, "out_weights": stored.weights, "out_model": stored.model_file}
        for name in self.defaulted:
            setattr(args, name, stored.path(names[name]))
        shutil.rmtree(self.scratch, ignore_errors=True)
        return stored


def _from_store(args: argparse.Namespace) -> _StoreBuild | None:
    """With --store: fill --base, --deployed and the outputs from the store's latest version of --model."""
    from publisher.errors import ReleaseInputError
    from publisher.release.store import ReleaseStore

    if args.store is None:
        missing = [name for name in ("base", "out") if getattr(args, name) is None
                   and (name == "out" or args.arch is not None)]
        if missing:
            raise ReleaseInputError(f"--{missing[0]} is needed (or --store DIR --model ID, to build on the latest "
                                    "version in a release store)")
        return None
    if args.model is None:
        raise ReleaseInputError("--store needs --model ID: the model whose latest version to build on")
    store = ReleaseStore(args.store)
    latest = store.latest(args.model)
    if latest is None:
        raise ReleaseInputError(f"{args.store} holds no version of {args.model}: record the one devices run with "
                                f"`rankcast release init --store {args.store} --model {args.model} --deployed FILE "
                                "--weights BASE.pt`")
    if args.base is None and latest.weights is None and args.arch is not None:
        raise ReleaseInputError(f"version {latest.version} of {args.model} has no weights in the store: pass --base")
    import tempfile

    scratch = Path(tempfile.mkdtemp(prefix=".building-", dir=args.store))  # one per run: builds may overlap
    if args.arch is not None:
        args.base = args.base or latest.path(latest.weights)
    args.deployed = args.deployed or latest.model_path
    outputs = {"out": "update.rcu", "out_weights": "weights.pt", "out_model": f"model{latest.model_path.suffix}"}
    defaulted = [name for name in outputs if getattr(args, name) is None]
    for name in defaulted:
        setattr(args, name, scratch / outputs[name])
    return _StoreBuild(store, latest, scratch, defaulted)


def _summary(args: argparse.Namespace, result, seconds: float) -> str:
    """What was built, in words: bytes, ranks, how the size was chosen, accuracy, the files written."""
    from publisher.training.update import describe_ranks

    built, search = result.built, result.search
    size = len(built.payload)
    both = args.both_factors if search is None else not search.chosen.seeded
    sent = "U and V" if both else "the smaller factor, the other regenerated from a seed"
    lines = [
        f"wrote {args.out}: an update of {size:,} bytes in {_duration(seconds)} (a full release of the model "
        f"is {built.full_model_bytes:,} bytes, {built.full_model_bytes / size:.0f}x more)",
        f"  ranks      {describe_ranks(built.ranks)} ({args.codes} codes of {sent})"
        + ("; every bias and norm parameter as i8 deltas" if args.train_biases else ""),
        *_search_lines(search, args.train),
        f"  accuracy   {built.accuracy_before:.1%} -> {built.accuracy_after:.1%} on {args.eval} (the model a device "
        "rebuilds" + ("" if search is None or search.reference is None else
                      f"; the full fine-tune: {search.reference.eval_accuracy:.1%}") + ")",
        f"  applies to {args.deployed} (sha256 {_sha256(args.deployed.read_bytes())[:16]}), which becomes sha256 "
        f"{_sha256(built.target_file)[:16]}" if args.deployed else "  applies to no --deployed file, so it cannot "
        "be published: build it again with --deployed FILE, the model file devices run",
    ]
    weights = "updated state_dict: the next --base" if args.arch else "the imported module's updated state_dict"
    written = [(args.out_weights, weights),
               (args.out_model, "updated model file: the next --deployed")]
    lines += [f"  also wrote {path} ({what})" for path, what in written if path is not None]
    return "\n".join(lines)


def _search_lines(search, train: Path) -> list[str]:
    """How the size search chose the update, for the summary (nothing when --rank or --budget chose it)."""
    from publisher.training.targeted import points_text

    if search is None:
        return []
    if search.reference is None:
        goal = f"{search.goal:.1%}, the given --target-accuracy"
    else:
        goal = (f"{search.goal:.1%}, a full fine-tune's {search.reference.accuracy:.1%} (lr "
                f"{search.reference.lr:g}) less {points_text(100 * (search.reference.accuracy - search.goal))}")
    return [
        f"  target     {goal}, on a validation split of {search.validation_examples:,} training examples",
        f"  reached    {search.chosen.accuracy:.1%} there, at least {search.chosen.bound:.1%} within one standard "
        f"error: the smallest of {len(search.attempts)} trained candidates that did ({search.chosen.form}, planned "
        f"for {search.chosen.budget:,} bytes)",
        f"  refit      its ranks trained again on all of {train} (what ships; --no-refit ships the candidate)"
        if search.refit else "  as measured: the candidate trained on the rest of the training data",
    ]


class _EpochLog:
    """Each training and its epochs on stderr: the loss, the time an epoch takes, the time left; and what
    a size search found between trainings."""

    def __init__(self, lines: int = _EPOCH_LINES) -> None:
        self.lines, self.epochs, self.every, self.started, self.first = lines, 0, 1, 0.0, 0.0

    def stage(self, what: str, epochs: int, examples: int) -> None:
        self.epochs, self.every, self.started = epochs, math.ceil(epochs / self.lines), time.monotonic()
        print(f"{what}: {epochs} epoch{'s' * (epochs != 1)} on {examples:,} examples", file=sys.stderr, flush=True)

    def note(self, line: str) -> None:
        print(f"  -> {line}", file=sys.stderr, flush=True)

    def epoch(self, epoch: int, loss: float) -> None:
        now = time.monotonic()
        if epoch == 1:
            self.first = now  # the first epoch also pays for warming up, so the estimate leaves it out
        if epoch % self.every and epoch not in (1, self.epochs):
            return
        per_epoch = (now - self.started) if epoch == 1 else (now - self.first) / (epoch - 1)
        left = f"{_duration(per_epoch * (self.epochs - epoch))} to go" if epoch < self.epochs else "done"
        if epoch == 1:
            timing = f"{_duration(per_epoch)} with start-up, {'at most ' if epoch < self.epochs else ''}{left}"
        else:
            timing = f"{_duration(per_epoch)} per epoch, {'about ' if epoch < self.epochs else ''}{left}"
        print(f"  epoch {epoch:>{len(str(self.epochs))}}/{self.epochs}  loss {loss:.4f}  {timing}",
              file=sys.stderr, flush=True)


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds:.2f} s"
    return f"{seconds:.1f} s" if seconds < 90 else f"{seconds / 60:.0f} min"
