"""`rankcast update build`: train a factorised update for a PyTorch model and write UPDATE.rcu."""

from __future__ import annotations

import argparse
from pathlib import Path


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
        description="Prints JSON {accuracy_before, accuracy_after, update_bytes, full_model_bytes}; the accuracies "
        "are those of the model a device rebuilds, on EVAL.npz.",
    )
    build.add_argument("--arch", required=True, metavar="MODULE:FACTORY", help="callable that builds the nn.Module")
    build.add_argument("--base", required=True, type=Path, metavar="BASE.pt", help="state_dict of the deployed model")
    build.add_argument("--train", required=True, type=Path, metavar="TRAIN.npz", help="arrays x and y to train on")
    build.add_argument("--eval", required=True, type=Path, metavar="EVAL.npz", help="arrays x and y to measure on")
    size = build.add_mutually_exclusive_group()
    size.add_argument("--rank", type=int, help="one rank for every layer (default 8)")
    size.add_argument(
        "--budget", type=int, metavar="BYTES",
        help="largest payload: the largest ranks that fit, more on layers whose rank is cheap, the widest "
        "layers only once they get 7 (with --both-factors: ranks per layer from a short fine-tune's spectrum)",
    )
    build.add_argument(
        "--both-factors", action="store_true",
        help="train and send U and V, the paper's form: more bytes for the same accuracy on narrow layers "
        "(docs/method.md); --lr 1e-2 suits it",
    )
    build.add_argument(
        "--codes", choices=("trit", "b1", "i4", "i8"), default="trit",
        help="codes of the sent factors: trit (-1/0/+1, 1.6 bits; default), b1 (signs, 1 bit), i4 or i8",
    )
    build.add_argument("--epochs", type=int, default=20, help="training epochs, all on the codes devices receive")
    build.add_argument("--lr", type=float, help="Adam learning rate of the factors (default 3e-2)")
    build.add_argument("--deployed", type=Path, metavar="FILE", help="the deployed RCW model file: pins base/target")
    build.add_argument("--out", required=True, type=Path, metavar="UPDATE.rcu")
    build.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json

    from publisher.training.factorised import FactorConfig
    from publisher.training.from_files import build_from_files

    summary = build_from_files(
        arch=args.arch, base=args.base, train=args.train, evaluate=args.eval, out=args.out,
        rank=args.rank, budget=args.budget, epochs=args.epochs, lr=args.lr, deployed=args.deployed,
        factors=FactorConfig(dtype=args.codes, seeded=not args.both_factors),
    )
    print(json.dumps(summary))
    return 0
