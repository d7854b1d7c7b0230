"""`rankcast simulate`: a fleet of real device clients behind emulated radio links receives a release."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="deliver a release to a simulated fleet over emulated NB-IoT/LTE-M/... links",
        description="Start Mosquitto (broker_config: passwords, ACL) on free ports, run N real device clients, "
        "each behind its own emulated link (rate, latency, jitter, loss as TCP stalls, outages), publish the "
        "release once per strategy and measure per device the time until it runs the new model, the bytes "
        "on the wire each way and its reconnects. Writes DIR/report.json, DIR/report.png and "
        "DIR/devices.csv. Times are link time: with --time-scale X the links run X times faster than "
        "the wall clock. Without --scenario or --update, a small synthetic model and update are used.",
    )
    parser.add_argument("--list-links", action="store_true", help="print the link profiles and exit")
    parser.add_argument("--catchup", action="store_true",
                        help="instead: a fleet spread over versions 1..4 by staged rollouts and offline periods "
                        "receives version 5; prints each device's path (chain of deltas or full) and bytes, and the "
                        "broker's egress against a full release for everyone (DIR/catchup.json; about 10 s)")
    parser.add_argument("--devices", type=int, default=10, metavar="N", help="fleet size (default 10)")
    parser.add_argument("--link", default="nbiot:0.5,ltem", metavar="PROFILE[:FRACTION][,...]",
                        help="link profiles and the fraction of the fleet on each (default nbiot:0.5,ltem)")
    parser.add_argument("--links-file", type=Path, metavar="TOML", help="extra link profiles ([profiles.NAME])")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--scenario", choices=("refine", "drift", "newtask"),
                        help="train a digits model and a factorised update for this scenario")
    parser.add_argument("--rcw", action="store_true",
                        help="with --scenario: devices run RCW files instead of float32 .tflite files")
    source.add_argument("--update", type=Path, metavar="FILE", help="a .rcu update (rankcast update build)")
    parser.add_argument("--base", type=Path, metavar="FILE", help="with --update: the model file devices run")
    parser.add_argument("--compare", default="full,factorised", metavar="LIST",
                        help="strategies, comma-separated: full (whole model), factorised (the update)")
    parser.add_argument("--time-scale", type=float, default=1.0, metavar="X",
                        help="run links X times faster; reported times stay link time (default 1)")
    parser.add_argument("--timeout", type=float, default=3600.0, metavar="S",
                        help="link seconds after publishing before unfinished devices count as timed out")
    parser.add_argument("--seed", type=int, default=0, help="seed of the links' loss, jitter and outages")
    parser.add_argument("--out", type=Path, default=Path("sim-out"), metavar="DIR", help="output directory")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from simulator.fleet.links import BUILTIN, load_profiles, profile_table

    if args.list_links:
        print(profile_table(load_profiles(args.links_file) if args.links_file else BUILTIN))
        return 0
    if args.catchup:
        return _catchup(args)
    from simulator.simulate import simulate

    if args.devices < 1:
        raise SystemExit("rankcast simulate: --devices must be at least 1")
    result = simulate(
        devices=args.devices, links=args.link, out=args.out, scenario=args.scenario, update=args.update,
        base=args.base, compare=tuple(s.strip() for s in args.compare.split(",") if s.strip()),
        time_scale=args.time_scale, timeout_s=args.timeout, links_file=args.links_file, seed=args.seed,
        tflite=not args.rcw,
    )
    return 0 if all(s.applied == args.devices for s in result.strategies) else 2


def _catchup(args: argparse.Namespace) -> int:
    import sys
    import tempfile

    from simulator.fleet.catchup import run_catchup, write_report

    if args.devices < 4:
        raise SystemExit("rankcast simulate --catchup: --devices must be at least 4")
    with tempfile.TemporaryDirectory(prefix="rankcast-catchup-") as workdir:
        report = run_catchup(Path(workdir), devices=args.devices, say=lambda line: print(line, file=sys.stderr))
    print(report.table())
    print(f"wrote {write_report(report, args.out)}", file=sys.stderr)
    return 0 if all(d.final_version == 5 and d.exact for d in report.devices) else 2
