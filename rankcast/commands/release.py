"""`rankcast release list|prune`: the releases a broker keeps retained for a model, and clearing old ones."""

from __future__ import annotations

import argparse

from rankcast.commands.publish import add_broker_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "release",
        help="list or prune the retained releases of a model",
        description="Releases stay retained on the broker until pruned: `list` shows them, `prune` clears the "
        "chunks of superseded ones (never the release the model's manifest names).",
    )
    actions = parser.add_subparsers(title="actions", metavar="ACTION", required=True)
    for name, text in (("list", "list retained releases"), ("prune", "clear superseded releases' chunks")):
        action = actions.add_parser(name, help=text, description=text)
        add_broker_arguments(action)
        action.add_argument("--model", required=True, metavar="ID")
        if name == "prune":
            action.add_argument("--keep", type=int, default=1, metavar="N", help="newest releases to keep (1)")
            action.add_argument("--dry-run", action="store_true", help="only show what would be cleared")
        action.set_defaults(run=run, action=name)


def run(args: argparse.Namespace) -> int:
    from publisher.release.publish import list_releases, prune_releases
    from rankcast.commands.publish import broker_session

    with broker_session(args) as session:
        if args.action == "list":
            releases = list_releases(session, args.model, args.prefix)
            for release in releases:
                m = release.manifest
                mark = "  (current)" if release.current else ""
                print(f"{m.model} release {m.version}: {m.payload_kind}, {m.chunk_count} chunks, "
                      f"{m.payload_length} bytes, expires {m.expires}{mark}")
            if not releases:
                print(f"no retained releases of {args.model}")
            return 0
        pruned = prune_releases(session, args.model, args.prefix, keep=args.keep, dry_run=args.dry_run)
    verb = "would clear" if args.dry_run else "cleared"
    for release in pruned:
        print(f"{verb} {args.model} release {release.manifest.version} ({release.manifest.chunk_count} chunks)")
    if not pruned:
        print(f"nothing to prune for {args.model}")
    return 0
