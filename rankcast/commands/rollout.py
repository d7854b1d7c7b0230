"""`rankcast rollout set|run`: steer the latest release by a new manifest alone, or drive it through waves
that halt it when devices fail."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rankcast.broker_options import add_broker_arguments, broker_session

#: The exit status of a rollout that halted itself (errors exit 1).
HALTED_EXIT = 3


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "rollout", help="widen, narrow or pause a release's rollout, or drive it through waves that halt on failures",
        description="Steer the model's latest release after publishing it: `set` signs its manifest again with "
        "another rollout percent and publishes only that manifest; `run` does so wave after wave, watching the "
        "devices' statuses, and halts the release (a signed paused manifest) when failures pass a threshold.")
    actions = parser.add_subparsers(title="actions", metavar="ACTION", required=True)
    steer = actions.add_parser(
        "set", help="widen, narrow or pause the rollout (only the manifest is published again)",
        description="Sign the model's latest release again with another rollout percent and publish only its "
        "manifest: the chunks stay as they are on the broker. The cohort salt stays, so a wider rollout keeps "
        "every device that had the release; --percent 0 (or --pause) pauses it: devices that run the release "
        "keep it, the others stop downloading it. The new manifest is signed later than the one it replaces, "
        "so devices refuse a replay of the wider one (replayed).")
    _release_arguments(steer)
    share = steer.add_mutually_exclusive_group(required=True)
    share.add_argument("--percent", type=float, metavar="PCT", help="percent of devices, 0..100")
    share.add_argument("--pause", action="store_true", help="the same as --percent 0")
    steer.set_defaults(run=_set)
    drive = actions.add_parser(
        "run", help="drive the release through waves (1%% -> 10%% -> 50%% -> 100%%), halting it on failures",
        description="Widen the latest release (published with --rollout 0) wave by wave. A wave moves on once it "
        "has soaked for --soak and --min-devices of the devices it added run the release (all of them, if it added "
        "fewer); nothing moves while no device has reported. Once --abort-min-devices "
        "devices have finished (run it, or failed with one of --abort-codes) and --abort-threshold percent of "
        "them failed, the release is paused (a signed manifest at 0 %) and the command exits 3 with a report. "
        "Its state is in --state: killed and started again with the same arguments, it goes on where it was.")
    _release_arguments(drive)
    drive.add_argument("--waves", default="1,10,50,100", metavar="PCTS", help="rising percents ending at 100 "
                       "(default 1,10,50,100)")
    drive.add_argument("--soak", default="10m", metavar="DURATION", help="least time per wave: 30s, 10m, 2h (10m)")
    drive.add_argument("--min-devices", type=int, default=1, metavar="N",
                       help="devices a wave added that must run the release before the next wave (1)")
    drive.add_argument("--abort-codes", metavar="CODES",
                       help="comma-separated device error codes that count as failures (default: the release's "
                       "own faults: bad-hash, bad-format, over-limit, model-mismatch, non-finite, canary-failed)")
    drive.add_argument("--abort-threshold", type=float, default=10.0, metavar="PCT",
                       help="halt when this percent of the devices that finished failed (10)")
    drive.add_argument("--abort-min-devices", type=int, default=1, metavar="N",
                       help="judge failures only once this many devices finished (1)")
    drive.add_argument("--state", type=Path, metavar="FILE",
                       help="where the rollout keeps its progress (default ./rollout-MODEL-vN.json)")
    drive.add_argument("--poll", default="10s", metavar="DURATION", help="how often to read the statuses (10s)")
    drive.set_defaults(run=_run)


def _release_arguments(parser: argparse.ArgumentParser) -> None:
    add_broker_arguments(parser)
    parser.add_argument("--model", required=True, metavar="ID", help="model id")
    parser.add_argument("--version", required=True, type=int, metavar="N", help="the model's latest release")
    parser.add_argument("--key", required=True, type=Path, metavar="signing.key",
                        help="the release key that signed the release")
    parser.add_argument("--cosign-key", action="append", default=[], type=Path, metavar="signing.key",
                        help="another release key that signs too (repeat), as for `rankcast publish`")


def _keys(args: argparse.Namespace):
    from publisher.release.build import load_release_key

    return load_release_key(args.key), tuple(load_release_key(path) for path in args.cosign_key)


def _set(args: argparse.Namespace) -> int:
    from codec.manifest import iso_time
    from codec.manifest_compact import travels_inline
    from publisher.rollout.steer import set_rollout

    key, cosigners = _keys(args)
    with broker_session(args) as session:
        manifest = set_rollout(session, args.model, args.version, 0.0 if args.pause else args.percent, key,
                               args.prefix, cosigners)
    what = "paused" if manifest.rollout_percent == 0 else f"rollout {manifest.rollout_percent:g}%"
    chunks = "its chunk inline" if travels_inline(manifest) else f"{manifest.chunk_count} chunks untouched"
    print(f"{args.model} release {manifest.version}: {what} (manifest signed {iso_time(manifest.created)}; "
          f"{chunks})")
    return 0


def _run(args: argparse.Namespace) -> int:
    from publisher.release.build import parse_duration
    from publisher.rollout.driver import Rollout, run_rollout
    from publisher.rollout.state import HALTED
    from publisher.rollout.tally import Verdict
    from publisher.rollout.waves import DEFAULT_ABORT_CODES, AbortPolicy, parse_waves

    codes = DEFAULT_ABORT_CODES if args.abort_codes is None else frozenset(args.abort_codes.split(","))
    policy = AbortPolicy(codes, args.abort_threshold / 100, args.abort_min_devices)
    key, cosigners = _keys(args)
    soak = 0 if args.soak in ("0", "0s") else parse_duration(args.soak)
    rollout = Rollout(args.model, args.version, parse_waves(args.waves, soak, args.min_devices), policy, key,
                      args.prefix, cosigners)
    state_path = args.state or Path(f"rollout-{args.model}-v{args.version}.json")
    last: list[str] = []

    def report(wave, counts, decided) -> None:
        codes = f" ({_codes(counts.failed)})" if counts.failed else ""
        line = (f"wave {wave.percent:g}%: {len(counts.cohort)} in the cohort, {len(counts.succeeded)} run release "
                f"{args.version}, {len(counts.failed)} failed{codes}"
                + ("" if decided is Verdict.WAIT else f" -> {decided.value}")
                + (" (this wave added no device)" if decided is Verdict.ADVANCE and not counts.joined else ""))
        if last != [line]:
            print(line, flush=True)
            last[:] = [line]

    with broker_session(args) as session:
        state = run_rollout(session, rollout, state_path, parse_duration(args.poll), on_tally=report)
    for wave in state.history:
        print(f"  {wave['percent']:g}%: {wave['succeeded']} of {wave['cohort']} ran it, {len(wave['failed'])} failed")
    if state.outcome == HALTED:
        failed = state.history[-1]["failed"] if state.history else {}
        print(f"{args.model} release {args.version}: HALTED in the {state.history[-1]['percent']:g}% wave and paused "
              f"(failures: {_codes(failed)}); state in {state_path}", file=sys.stderr)
        return HALTED_EXIT
    print(f"{args.model} release {args.version}: rolled out to 100%; state in {state_path}")
    return 0


def _codes(failed: dict[str, str]) -> str:
    from collections import Counter

    return ", ".join(f"{code} x{n}" for code, n in sorted(Counter(failed.values()).items()))
