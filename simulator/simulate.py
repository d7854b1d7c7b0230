"""`rankcast simulate` as one function: inputs, a fleet run per strategy, a progress bar, the report.

``simulate()`` is what the command line calls; ``simulation_inputs()`` picks the model files (an update
file, a trained scenario, or the testbed's small synthetic model). It composes simulator.fleet (the
run) with simulator.bench.trained (a trained scenario), which is why it sits above both.
"""

from __future__ import annotations

from pathlib import Path

from simulator.fleet.config import FleetConfig
from simulator.fleet.errors import FleetInputError
from simulator.fleet.inputs import STRATEGIES, FleetInputs, load_update
from simulator.fleet.links import BUILTIN, LinkProfile, load_profiles, parse_link_mix
from simulator.fleet.progress import ProgressBar
from simulator.fleet.report import report_table, write_report
from simulator.fleet.results import FleetResult
from simulator.fleet.runner import run_fleet
from simulator.testbed.synthetic import write_small_update


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
        from simulator.bench.trained import build_scenario_update  # torch: only when a scenario is trained

        base_file, update_file, _ = build_scenario_update(scenario, Path(workdir) / "scenario", tflite=tflite)
    else:
        base_file, update_file, _ = write_small_update(Path(workdir) / "synthetic")
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
