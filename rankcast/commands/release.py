"""`rankcast release list|prune|delete`: the releases a broker retains for a model, and clearing them."""

from __future__ import annotations

import argparse
from pathlib import Path

from rankcast.broker_options import add_broker_arguments, broker_session

_ACTIONS = {
    "list": "list the retained releases: version, kind, size, and whether the current index lists them",
    "prune": "clear releases nobody can need (never the current one, one its index lists, or one a device "
    "reports downloading); says what it kept and why",
    "delete": "clear every retained topic of one version (--version N) or of the whole model (--all): what a "
    "mistake or an interrupted publish left, chunks without their manifest too",
}


_INIT = ("record in a release store the version devices run now (their first, flashed model), so updates "
         "build on it: `rankcast update build --store DIR --model ID`")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "release",
        help="list, prune or delete the retained releases of a model",
        description="Releases stay retained on the broker until cleared. The current manifest's index lists the "
        "older releases devices catch up through; prune keeps those.",
    )
    actions = parser.add_subparsers(title="actions", metavar="ACTION", required=True)
    init = actions.add_parser("init", help="record the version devices run in a release store", description=_INIT)
    init.add_argument("--store", required=True, type=Path, metavar="DIR", help="the release store (a directory)")
    init.add_argument("--model", required=True, metavar="ID")
    init.add_argument("--deployed", required=True, type=Path, metavar="FILE", help="the model file devices run")
    init.add_argument("--weights", type=Path, metavar="BASE.pt", help="its PyTorch state_dict (the first --base)")
    init.add_argument("--version", type=int, default=1, metavar="N", help="the version devices report (1)")
    init.set_defaults(run=_init)
    for name, text in _ACTIONS.items():
        action = actions.add_parser(name, help=text.split(":")[0].split(" (")[0], description=text)
        add_broker_arguments(action)
        action.add_argument("--model", required=True, metavar="ID")
        if name == "list":
            action.add_argument("--store", type=Path, metavar="DIR",
                                help="also show the release store's history: every version, its sizes, what it "
                                "was built on, and whether the broker holds it")
        if name == "prune":
            action.add_argument("--keep", type=int, default=1, metavar="N", help="newest versions to keep (1)")
        if name == "delete":
            which = action.add_mutually_exclusive_group(required=True)
            which.add_argument("--version", type=int, metavar="N", help="the version whose topics to clear")
            which.add_argument("--all", action="store_true", help="every topic of the model (a mistyped id)")
            action.add_argument("--force", action="store_true", help="also when it is the current release")
        if name != "list":
            action.add_argument("--dry-run", action="store_true", help="only show what would be cleared")
        action.set_defaults(run=run, action=name)


def run(args: argparse.Namespace) -> int:
    from publisher.release.retained import delete_release, list_releases, prune_releases

    with broker_session(args) as session:
        if args.action == "list":
            releases = list_releases(session, args.model, args.prefix)
            for release in releases:
                print(_describe(release) + (" (current)" if release.current else " (indexed)" if release.listed
                                            else ""))
            if not releases:
                print(f"no retained releases of {args.model}")
            if args.store is not None:
                print(_history(args.store, args.model, releases))
            return 0
        if args.action == "delete":
            topics = delete_release(session, args.model, args.prefix, None if args.all else args.version,
                                    force=args.force, dry_run=args.dry_run)
            what = "every topic" if args.all else f"release {args.version}"
            verb = "would clear" if args.dry_run else "cleared"
            print(f"{verb} {len(topics)} retained topics of {args.model} ({what})" if topics else
                  f"nothing retained for {args.model} ({what})")
            return 0
        result = prune_releases(session, args.model, args.prefix, keep=args.keep, dry_run=args.dry_run)
    verb = "would clear" if args.dry_run else "cleared"
    for release in result.cleared:
        print(f"{verb} {_describe(release)}")
    for release, reason in result.kept:
        print(f"kept {_describe(release)}: {reason}")
    if not result.cleared:
        print(f"nothing to prune for {args.model}")
    return 0


def _describe(release) -> str:
    from codec.manifest import iso_time
    from codec.manifest_compact import travels_inline

    m = release.manifest
    chunks = "1 chunk inline" if travels_inline(m) else f"{m.chunk_count} chunks"
    return f"{m.model} release {m.version} ({m.payload_kind}): {chunks}, {m.payload_length} bytes, " \
        f"expires {iso_time(m.expires)}"


def _init(args: argparse.Namespace) -> int:
    from publisher.release.store import ReleaseStore

    stored = ReleaseStore(args.store).add(args.model, args.version, args.deployed, weights=args.weights)
    print(f"recorded version {stored.version} of {args.model} in {args.store} ({stored.model_file}, sha256 "
          f"{stored.target_sha256[:16]}{', with weights' if stored.weights else ''})")
    return 0


def _history(store_root: Path, model: str, retained) -> str:
    """The store's versions of ``model``, oldest first, each with what the broker retains of it."""
    from publisher.release.store import ReleaseStore

    on_broker = {(r.manifest.version, r.manifest.payload_kind) for r in retained}
    lines = [f"history in {store_root}:"]
    for stored in ReleaseStore(store_root).versions(model):
        built = "flashed (no update)" if stored.parent is None else f"built on {stored.parent}, update file " \
            f"{stored.path(stored.update).stat().st_size:,} bytes" if stored.update else f"from {stored.parent}"
        held = [kind for kind in ("delta", "full") if (stored.version, kind) in on_broker]
        broker = f"broker holds {' and '.join(held)}" if held else ("published, no longer retained" if
                                                                   stored.published else "not published")
        lines.append(f"  version {stored.version}: {stored.model_file} {stored.model_path.stat().st_size:,} bytes, "
                     f"{built}; {broker}")
    if len(lines) == 1:
        lines.append(f"  no versions of {model} (`rankcast release init` records the first)")
    return "\n".join(lines)
