"""`rankcast simulate` as one function: inputs, a fleet run per strategy, a progress bar, the report.

``simulate()`` is what the command line and the demo call; ``simulation_inputs()`` picks the model files
(an update file, a trained scenario, or the small synthetic model).
"""

from __future__ import annotations

import sys
from pathlib import Path

from simulator.fleet import FleetConfig, FleetResult, run_fleet
from simulator.fleet_updates import (
    STRATEGIES,
    FleetInputError,
    FleetInputs,
    build_scenario_update,
    load_update,
    synthetic_update,
)
from simulator.links import BUILTIN, LinkProfile, load_profiles, parse_link_mix
from simulator.report import report_table, write_report


def profiles(links_file: Path | None = None) -> dict[str, LinkProfile]:
    """The built-in link profiles, plus those of ``links_file`` (TOML) when given."""
    return load_profiles(links_file) if links_file else dict(BUILTIN)


def simulation_inputs(
    workdir: Path,
    *,
    scenario: str | None = None,
    update: Path | None = None,
    base: Path | None = None,
    compare: tuple[str, ...] = STRATEGIES,
    tflite: bool = False,
) -> FleetInputs:
    """Base file and strategies: ``update`` (a .rcu) with its ``base`` file, a trained ``scenario``
    (refine, drift, newtask; with ``tflite`` as .tflite files), or, with neither, a small synthetic
    RCW model and a rank-4 update."""
    if scenario and update:
        raise FleetInputError("give --scenario or --update, not both")
    if update is not None:
        if base is None:
            raise FleetInputError("--update needs --base: the model file the devices run, which the update applies to")
        return load_update(base, update, compare)
    if scenario is not None:
        base_file, update_file, _ = build_scenario_update(scenario, Path(workdir) / "scenario", tflite=tflite)
    else:
        base_file, update_file, _ = synthetic_update(Path(workdir) / "synthetic")
    return load_update(base_file, update_file, compare)


def simulate(
    *,
    devices: int,
    links: str,
    out: Path,
    inputs: FleetInputs | None = None,
    scenario: str | None = None,
    update: Path | None = None,
    base: Path | None = None,
    compare: tuple[str, ...] = STRATEGIES,
    time_scale: float = 1.0,
    timeout_s: float = 3600.0,
    links_file: Path | None = None,
    seed: int = 0,
    tflite: bool = False,
    progress: bool = True,
) -> FleetResult:
    """Run the fleet for every strategy, write DIR/report.json, report.png and devices.csv, print the table."""
    out = Path(out)
    mix = parse_link_mix(links, profiles(links_file))
    if inputs is None:
        inputs = simulation_inputs(out / "inputs", scenario=scenario, update=update, base=base, compare=compare,
                                   tflite=tflite)
    config = FleetConfig(devices=devices, links=mix, time_scale=time_scale, timeout_s=timeout_s, seed=seed)
    bar = ProgressBar(devices, enabled=progress)
    try:
        result = run_fleet(config, inputs, out / "work", progress=bar.update)
    finally:
        bar.close()
    write_report(result, out)
    if progress:
        print(report_table(result))
        print(f"wrote {out / 'report.json'}, {out / 'report.png'} and {out / 'devices.csv'}")
    return result


class ProgressBar:
    """A tqdm bar on stderr per phase (connecting, then each strategy)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled = total, enabled
        self._bar = None
        self._phase: str | None = None

    def update(self, phase: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if phase != self._phase:
            self.close()
            from tqdm import tqdm

            label = "connecting" if phase == "connecting" else f"applying ({phase})"
            self._bar = tqdm(total=total, desc=label, unit="dev", file=sys.stderr, leave=True, dynamic_ncols=True,
                             disable=None)  # no bar when stderr is not a terminal
            self._phase = phase
        self._bar.n = done
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            self._phase = None
