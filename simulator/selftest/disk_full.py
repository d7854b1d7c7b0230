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
from pathlib import Path

from simulator.selftest.case import Case, Outcome
from simulator.selftest.harness import (
    SelftestBroker,
    StatusWatcher,
    file_sha256,
    install_model,
    make_delta_release,
    make_device_config,
    make_keypair,
    make_model,
    model_dir,
    publish_release,
    start_device_process,
    stop_process,
    store_state,
)

MODEL = "dfm"
#: The model is 4 MiB; the device may write files of at most 1 MiB (chunks, payload and state fit).
LIMIT = 1 << 20
SHAPES = {"w": (1024, 1024), "b": (1024,)}
WAIT_S = 60.0


def limit_file_size(limit: int = LIMIT):
    """A preexec_fn: files of at most ``limit`` bytes, and EFBIG instead of death by SIGXFSZ."""
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def _run(workdir: Path, quick: bool) -> Outcome:
    runs = 1 if quick else 3
    held, codes, failures = 0, [], []
    started = time.monotonic()
    with SelftestBroker(workdir / "broker", devices=1) as broker, StatusWatcher(broker) as watcher:
        device_id = broker.device_ids[0]
        key, public = make_keypair(workdir / "keys")
        config = make_device_config(workdir / "device", broker, device_id, MODEL, public)
        install_model(config, MODEL, make_model(0, SHAPES), 1)
        running = model_dir(config) / MODEL / "model.rcw"
        for run in range(runs):
            version = run + 2
            old = (version - 1, file_sha256(running))
            release, target = make_delta_release(running, version, MODEL, version, key)
            mark = watcher.seen
            process = start_device_process(config, preexec_fn=limit_file_size())
            try:
                publish_release(broker, release)
                status = watcher.wait(lambda s: s.get("state") == "error", device_id, WAIT_S,
                                      f"release {version} refused", after=mark)
            except TimeoutError as exc:
                failures.append(str(exc))
                stop_process(process)
                continue
            error = status.get("last_error") or {}
            codes.append(error.get("code"))
            reported = status["models"].get(MODEL, {})
            stayed = store_state(config, MODEL) == (old[0], old[1], old[1]) and \
                (reported.get("version"), reported.get("sha256")) == old and \
                not list((model_dir(config) / MODEL).glob(".staged-*"))
            stop_process(process)
            mark = watcher.seen
            process = start_device_process(config)  # space is back
            try:
                watcher.wait(lambda s, v=version: s.get("state") == "idle"
                             and s["models"].get(MODEL, {}).get("version") == v,
                             device_id, WAIT_S, f"release {version} applied once space is back", after=mark)
                applied = store_state(config, MODEL) == (version, target, target)
            except TimeoutError as exc:
                failures.append(str(exc))
                applied = False
            finally:
                stop_process(process)
            if stayed and applied and error.get("code") == "disk-full" and error.get("release") == version:
                held += 1
            else:
                failures.append(f"release {version}: model kept {stayed}, error {error}, applied later {applied}")
    return Outcome(
        "disk-full-apply", runs, held,
        f"{runs} applies under a {LIMIT >> 20} MiB file-size limit (model {file_size_mib(running)} MiB): "
        f"codes {sorted(set(map(str, codes)))}, model kept and applied after space came back in {held}; "
        f"{time.monotonic() - started:.0f} s" + (f"; {failures[0]}" if failures else ""),
    )


def file_size_mib(path: Path) -> int:
    return path.stat().st_size >> 20


CASES: list[Case] = [Case("disk-full-apply", "reliability", _run)]
