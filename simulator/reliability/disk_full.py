"""Disk full during apply: the device process runs under a file-size limit (RLIMIT_FSIZE, set before exec,
SIGXFSZ ignored, so a write past the limit fails with EFBIG) smaller than its model, so staging the copy a
delta release is applied to fails. The running model must stay (same sha256 on disk and in the status),
the status must report ``last_error.code == "disk-full"``, and once space is back (the device restarted
without the limit, as after freeing space and rebooting) the same release applies.

Why a limit and not a small filesystem: RLIMIT_FSIZE needs no mount privileges and behaves the same in
every CI container; device_client maps ENOSPC, EFBIG and EDQUOT alike to the code ``disk-full``. The
client does not retry a failed release in the same process (it waits for a new manifest or a restart).
"""

from __future__ import annotations

import resource
import signal
import time
from collections.abc import Callable
from pathlib import Path

from simulator.reliability.case import Case, Outcome
from simulator.testbed.broker import Broker
from simulator.testbed.devices import DeviceProcess
from simulator.testbed.probe import broker_probe
from simulator.testbed.synthetic import make_delta_release, random_model_file
from simulator.testbed.watched import watched_device

MODEL = "dfm"
#: The model is 4 MiB; the device may write files of at most 1 MiB (chunks, payload and state fit).
LIMIT = 1 << 20
SHAPES = {"w": (1024, 1024), "b": (1024,)}
WAIT_S = 60.0


def limit_file_size(limit: int = LIMIT) -> Callable[[], None]:
    """A preexec_fn: files of at most ``limit`` bytes, and EFBIG instead of death by SIGXFSZ."""
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def _run(workdir: Path, quick: bool) -> Outcome:
    runs = 1 if quick else 3
    held, codes, failures = 0, [], []
    started = time.monotonic()
    with Broker(workdir / "broker") as broker, broker_probe(broker) as probe:
        watched = watched_device(workdir, broker, probe, MODEL, random_model_file(0, SHAPES))
        device_id, key, home = watched.device_id, watched.key, watched.home
        for run in range(runs):
            version = run + 2
            old = (version - 1, home.state(MODEL)[2])
            release, _ = make_delta_release(home.model_file(MODEL), version, MODEL, version, key)
            target = release.manifest.target_sha256.hex()
            mark = probe.seen
            with DeviceProcess(home, preexec_fn=limit_file_size()):
                broker.publish(release)
                try:
                    status = probe.wait_status(device_id, lambda s: s.get("state") == "error",
                                               f"release {version} refused", WAIT_S, after=mark)
                except TimeoutError as exc:
                    failures.append(str(exc))
                    continue
                # checked while the refusing device still runs: nothing left behind for a shutdown to clean
                error = status.get("last_error") or {}
                codes.append(error.get("code"))
                reported = status["models"].get(MODEL, {})
                stayed = home.state(MODEL) == (old[0], old[1], old[1]) and \
                    (reported.get("version"), reported.get("sha256")) == (old[0], old[1][:16]) \
                    and not home.staged(MODEL)
            mark = probe.seen
            with DeviceProcess(home):  # space is back
                try:
                    probe.wait_status(device_id, lambda s, v=version: s.get("state") == "idle"
                                      and s["models"].get(MODEL, {}).get("version") == v,
                                      f"release {version} applied once space is back", WAIT_S, after=mark)
                    applied = home.state(MODEL) == (version, target, target)
                except TimeoutError as exc:
                    failures.append(str(exc))
                    applied = False
            if stayed and applied and error.get("code") == "disk-full" and error.get("release") == version:
                held += 1
            else:
                failures.append(f"release {version}: model kept {stayed}, error {error}, applied later {applied}")
    model_mib = len(home.model_file(MODEL)) >> 20
    detail = (f"{runs} applies under a {LIMIT >> 20} MiB file-size limit (model {model_mib} MiB): "
              f"codes {sorted(set(map(str, codes)))}, model kept and applied after space came back in {held}; "
              f"{time.monotonic() - started:.0f} s")
    facts = {"applies": runs, "codes": codes, "recovered": held, "limit_mib": LIMIT >> 20, "model_mib": model_mib}
    return Outcome("disk-full-apply", runs, held, detail, facts, tuple(failures))


CASES: list[Case] = [Case("disk-full-apply", "reliability", _run)]
