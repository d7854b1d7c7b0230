"""`rankcast selftest`: run every reliability and security case, print a table, write selftest.json.

The cases come from the eight modules below (a missing module is an error: the suite is only complete
with all of them). Each case runs in a temp work directory of its own; a case that raises is reported
as a case that did not hold (0 of 1), and the suite carries on with the next one.
"""

from __future__ import annotations

import importlib
import json
import logging
import platform
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import asdict
from pathlib import Path

from simulator.reliability.case import Case, Outcome

MODULES = ("hostile", "hostile_download", "trust_attacks", "topic_ids", "acl_matrix", "load", "power_loss",
           "broker_restart", "disk_full")


def all_cases(modules: tuple[str, ...] = MODULES) -> list[Case]:
    """Every case of ``modules`` (simulator.reliability.<name>), in order; ImportError if one is missing."""
    cases: list[Case] = []
    for name in modules:
        cases += importlib.import_module(f"simulator.reliability.{name}").CASES
    return cases


def select(cases: list[Case], only: list[str] | None) -> list[Case]:
    """The cases named in ``only`` (a case name or a group); all of them without ``only``."""
    if not only:
        return cases
    wanted = set(only)
    chosen = [case for case in cases if case.name in wanted or case.group in wanted]
    unknown = wanted - {case.name for case in chosen} - {case.group for case in chosen}
    if unknown:
        names = ", ".join(repr(case.name) for case in cases)
        raise ValueError(f"no case or group named {', '.join(sorted(unknown))}; cases: {names}")
    return chosen


def run_case(case: Case, workdir: Path, quick: bool) -> tuple[Outcome, float]:
    """Run one case; an exception becomes an outcome that did not hold (its last line in the detail)."""
    started = time.monotonic()
    try:
        outcome = case.run(workdir, quick)
    except Exception as exc:  # noqa: BLE001 - one broken case must not hide the others' results
        logging.getLogger("rankcast.reliability").error("%s raised:\n%s", case.name, traceback.format_exc())
        outcome = Outcome(case.name, 1, 0, f"raised {type(exc).__name__}: {exc}")
    return outcome, time.monotonic() - started


def format_table(rows: list[dict]) -> str:
    headers = ("case", "group", "runs", "held", "result", "time", "detail")
    table = [[r["name"], r["group"], str(r["runs"]), str(r["held"]), "PASS" if r["ok"] else "FAIL",
              f"{r['seconds']:.1f}s", r["detail"]] for r in rows]
    widths = [max(len(h), *(len(row[i]) for row in table)) if table else len(h) for i, h in enumerate(headers)]
    widths[-1] = len(headers[-1])
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in table:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=False)) + "  " + row[-1])
    return "\n".join(lines)


def run_selftest(out: Path, quick: bool, only: list[str] | None = None, modules: tuple[str, ...] = MODULES) -> int:
    """Run the suite (or the cases in ``only``); print the table; write out/selftest.json and
    out/selftest.log. Returns 0 if every case held, 1 otherwise."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cases = select(all_cases(modules), only)
    handler = logging.FileHandler(out / "selftest.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    rows: list[dict] = []
    started = time.monotonic()
    try:
        for number, case in enumerate(cases, 1):
            print(f"[{number}/{len(cases)}] {case.name} ({case.group}) ...", file=sys.stderr, flush=True)
            workdir = Path(tempfile.mkdtemp(prefix=f"rankcast-reliability-{case.name.replace(' ', '-')}-"))
            try:
                outcome, seconds = run_case(case, workdir, quick)
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
            verdict = "held" if outcome.ok else "DID NOT HOLD"
            print(f"[{number}/{len(cases)}] {case.name}: {outcome.held}/{outcome.runs} {verdict} in {seconds:.1f} s",
                  file=sys.stderr, flush=True)
            fields = {key: value for key, value in asdict(outcome).items() if key != "name"}
            rows.append({"name": case.name, "group": case.group, **fields, "detail": outcome.summary(),
                         "ok": outcome.ok, "seconds": round(seconds, 2)})
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)
        handler.close()
    ok = bool(rows) and all(row["ok"] for row in rows)
    report = {"quick": quick, "only": only, "ok": ok, "seconds": round(time.monotonic() - started, 1),
              "python": platform.python_version(), "cases": rows}
    (out / "selftest.json").write_text(json.dumps(report, indent=2) + "\n")
    print(format_table(rows))
    print(f"\n{sum(r['ok'] for r in rows)} of {len(rows)} cases held ({'quick' if quick else 'full'} run, "
          f"{report['seconds']} s); report in {out / 'selftest.json'}")
    return 0 if ok else 1
