"""`rankcast rollout`: widen, narrow or pause the latest release by a new manifest alone."""

from __future__ import annotations

import argparse
from pathlib import Path

from rankcast.broker_options import add_broker_arguments, broker_session


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "rollout",
        help="widen, narrow or pause a release's rollout (only its manifest is published again)",
        description="Sign the model's latest release again with another rollout percent and publish only its "
        "manifest: the chunks stay as they are on the broker. The cohort salt stays, so a wider rollout keeps "
        "every device that had the release; --percent 0 (or --pause) pauses it: devices that run the release "
        "keep it, the others stop downloading it. The new manifest is signed later than the one it replaces, "
        "so devices refuse a replay of the wider one (replayed).",
    )
    add_broker_arguments(parser)
    parser.add_argument("--model", required=True, metavar="ID", help="model id")
    parser.add_argument("--version", required=True, type=int, metavar="N", help="the model's latest release")
    share = parser.add_mutually_exclusive_group(required=True)
    share.add_argument("--percent", type=float, metavar="PCT", help="percent of devices, 0..100")
    share.add_argument("--pause", action="store_true", help="the same as --percent 0")
    parser.add_argument("--key", required=True, type=Path, metavar="signing.key",
                        help="the release key that signed the release")
    parser.add_argument("--cosign-key", action="append", default=[], type=Path, metavar="signing.key",
                        help="another release key that signs too (repeat), as for `rankcast publish`")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from codec.manifest import iso_time
    from publisher.release.build import load_release_key
    from publisher.rollout.steer import set_rollout

    percent = 0.0 if args.pause else args.percent
    key, cosigners = load_release_key(args.key), tuple(load_release_key(path) for path in args.cosign_key)
    with broker_session(args) as session:
        manifest = set_rollout(session, args.model, args.version, percent, key, args.prefix, cosigners)
    what = "paused" if manifest.rollout_percent == 0 else f"rollout {manifest.rollout_percent:g}%"
    print(f"{args.model} release {manifest.version}: {what} (manifest signed {iso_time(manifest.created)}; "
          f"{manifest.chunk_count} chunks untouched)")
    return 0
