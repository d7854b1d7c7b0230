"""`rankcast dashboard` as an operator sees it: the real command (a subprocess, logged in with the broker's
read-only collector account) against a real Mosquitto and a small fleet of device clients, read by Debian's
Chromium, headless, driven by Playwright. The page shows the right counts, follows a staged rollout live
from paused to completed and a bad one to its halt, and shows what a device reports as text, never as
markup. The tests run in order on one fleet (each builds on the releases of the one before)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from codec.manifest import sign_manifest
from codec.release import Release
from codec.topics import status_topic
from publisher.rollout.driver import Rollout, run_rollout
from publisher.rollout.waves import AbortPolicy, parse_waves
from simulator.testbed import synthetic
from simulator.testbed.broker import COLLECTOR, Broker
from simulator.testbed.devices import QUICK_CLIENT, DeviceHome, DeviceThread
from simulator.testbed.probe import broker_probe

FLEET = 6
MODEL = "digits"
#: Set to a folder to keep the page's screenshots there (docs/img holds the ones the docs show).
SCREENSHOTS = os.environ.get("RANKCAST_SCREENSHOTS")


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "Chromium is not installed: `make browser` installs Debian's chromium (apt-get)"
    return found


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    with Broker(tmp_path_factory.mktemp("dashboard") / "broker", devices=FLEET + 1) as running:
        yield running


@pytest.fixture(scope="module")
def fleet(broker: Broker, tmp_path_factory: pytest.TempPathFactory):
    """FLEET device clients at version 1 of MODEL (the last account stays free for a hand-made status)."""
    root = tmp_path_factory.mktemp("fleet")
    key, public = synthetic.make_keypair(root / "keys")
    base = synthetic.random_model_file(8)
    devices = []
    for device_id in broker.device_ids[:FLEET]:
        home = DeviceHome.create(root / device_id, broker, device_id, MODEL, public,
                                 client=replace(QUICK_CLIENT, heartbeat=30.0))
        home.install(MODEL, base, 1)
        devices.append(DeviceThread(home))
    yield key, base, devices
    for device in devices:
        device.stop()


@pytest.fixture(scope="module")
def dashboard(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[int, Path]]]:
    """The command's URL and the rollout state files it shows (release -> file)."""
    folder = tmp_path_factory.mktemp("rollout")
    states = {version: folder / f"rollout-v{version}.json" for version in (2, 3)}
    command = [sys.executable, "-m", "rankcast", "dashboard", "--broker", broker.operator_url, "--username", COLLECTOR,
               "--password-file", str(broker.password_file(COLLECTOR)), "--cafile", str(broker.layout.ca_cert),
               "--listen", "127.0.0.1:0", "--refresh", "0.5",
               *(argument for path in states.values() for argument in ("--rollout-state", str(path)))]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    assert " at http://" in line, f"{line}{process.stderr.read() if process.poll() is not None else ''}"
    yield line.split(" at ")[1].split()[0], states
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def page(dashboard) -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.goto(dashboard[0])
        yield page
        browser.close()
        assert errors == [], "the page raised or logged errors"


def _shoot(page: Page, name: str) -> None:
    if SCREENSHOTS:
        page.screenshot(path=str(Path(SCREENSHOTS) / name), full_page=True)


def _model(page: Page):
    return page.locator(f'section[data-model="{MODEL}"]')


def test_the_page_counts_the_fleet(broker, fleet, page) -> None:
    expect(page.locator("#connection")).to_contain_text("connected")
    expect(page.locator("#devices-total")).to_have_text(str(FLEET))
    expect(page.locator('#states [data-state="idle"] .count')).to_have_text(str(FLEET))
    expect(page.locator("#stale-count")).to_have_text("0")
    expect(page.locator("#rows tbody tr")).to_have_count(FLEET)
    expect(page.locator("#models section")).to_have_count(0)  # no release published yet


def test_the_page_follows_a_staged_rollout_from_paused_to_every_device(broker, fleet, page, dashboard) -> None:
    key, base, devices = fleet
    release, _ = synthetic.make_delta_release(base, 2, MODEL, 2, key, chunk_size=512, rollout_percent=0.0)
    broker.publish(release)
    model = _model(page)
    expect(model.locator(".wave-percent")).to_have_text("paused")
    expect(model.locator("h2")).to_contain_text("latest release 2 (delta")
    expect(model.locator('.versions [data-version="1"]')).to_have_text(str(FLEET))

    ids = [device.device.device_id for device in devices]
    first = next(p for p in range(1, 100)
                 if 0 < sum(replace(release.manifest, rollout_percent=float(p)).in_rollout(d) for d in ids) < FLEET)
    cohort = sum(replace(release.manifest, rollout_percent=float(first)).in_rollout(d) for d in ids)
    rollout = Rollout(MODEL, 2, parse_waves(f"{first},100", soak_s=6.0, min_devices=1), AbortPolicy(), key,
                      broker.prefix)
    outcome: list = []
    with broker.publisher() as session:
        driver = threading.Thread(target=lambda: outcome.append(run_rollout(session, rollout, dashboard[1][2], 0.2)))
        driver.start()
        expect(model.locator(".wave-percent")).to_have_text(f"rollout {first:g}%", timeout=20_000)
        expect(model.locator("h3").first).to_contain_text("wave 1 of 2")
        expect(model.locator(".wave-cohort")).to_have_text(str(cohort))
        expect(model.locator(".wave-succeeded")).to_have_text(str(cohort), timeout=20_000)
        expect(model.locator('.versions [data-version="2"]')).to_have_text(str(cohort))
        _shoot(page, "dashboard-wave.png")
        driver.join(timeout=60)
    assert outcome and outcome[0].outcome == "completed"
    expect(model.locator("h3").first).to_contain_text("wave 2 of 2 · completed", timeout=20_000)
    expect(model.locator(".wave-succeeded")).to_have_text(str(FLEET), timeout=20_000)
    expect(model.locator(".wave-failed")).to_have_text("0")
    expect(model.locator('.versions [data-version="2"]')).to_have_text(str(FLEET))
    expect(model.locator('.history tr[data-version="2"] .running')).to_have_text(str(FLEET))
    expect(model.locator(".chips .chip.done")).to_have_count(2)


def test_errors_stale_devices_and_what_devices_say_are_shown_as_text(broker, fleet, page) -> None:
    """A device of the fleet's broker (not running a client) leaves a status that is old and carries an error
    whose message is markup: the page counts it as stale, counts the error by its code, and shows the markup
    as characters."""
    device = broker.device_ids[FLEET]
    hostile = '<img src="x" id="injected"> & <b>bold</b>'
    status = {"device": device, "state": "idle", "models": {MODEL: {"version": 1}}, "sent": time.time() - 4000,
              "heartbeat": 60, "last_error": {"code": "bad-hash", "release": 2, "model": MODEL, "message": hostile}}
    _status_as(broker, device, json.dumps(status).encode())
    expect(page.locator("#devices-total")).to_have_text(str(FLEET + 1))
    expect(page.locator("#stale-count")).to_have_text("1")
    expect(page.locator(f'#stale tr[data-device="{device}"]')).to_contain_text("h ago")
    expect(page.locator('#errors tr[data-code="bad-hash"] .count')).to_have_text("1")
    expect(page.locator(f'#rows tr[data-device="{device}"]')).to_contain_text(hostile)
    assert page.locator("#injected").count() == 0 and page.locator("#rows b").count() == 0
    _shoot(page, "dashboard-problems.png")


def _status_as(broker: Broker, device: str, payload: bytes) -> None:
    """Leave ``payload`` as ``device``'s retained status, logged in as that device."""
    with broker_probe(broker, device) as probe:
        probe.publish(status_topic(device, broker.prefix), payload, retain=True)


def test_a_bad_release_shows_its_halt_and_its_failures_by_code(broker, fleet, page, dashboard) -> None:
    """Release 3 promises another result, so every device that applies it refuses it (bad-hash): its rollout
    halts in its first wave, and the page says so with the failures by code."""
    key, _, devices = fleet
    base = devices[0].home.model_file(MODEL)
    good, _ = synthetic.make_delta_release(base, 3, MODEL, 3, key, chunk_size=512, rollout_percent=0.0)
    manifest = replace(good.manifest, target_sha256=hashlib.sha256(b"something else").digest())
    broker.publish(Release(manifest, sign_manifest(manifest, key), good.chunks))
    ids = [device.device.device_id for device in devices]
    first = next(p for p in range(1, 100)
                 if 0 < sum(replace(manifest, rollout_percent=float(p)).in_rollout(d) for d in ids) < FLEET)
    rollout = Rollout(MODEL, 3, parse_waves(f"{first},100", soak_s=0.0, min_devices=1), AbortPolicy(), key,
                      broker.prefix)
    with broker.publisher() as session:
        state = run_rollout(session, rollout, dashboard[1][3], 0.2)
    assert state.outcome == "halted"
    failed = len(state.history[-1]["failed"])
    model = _model(page)
    expect(model.locator("h3").first).to_contain_text("wave 1 of 2 · halted", timeout=20_000)
    expect(model.locator(".wave-percent")).to_have_text("paused")
    expect(model.locator(".wave-failed")).to_have_text(str(failed))
    expect(model.locator(".wave")).to_contain_text(f"bad-hash ×{failed}")
    expect(model.locator(".chips .chip.halted")).to_have_count(1)
    expect(page.locator('#errors tr[data-code="bad-hash"] .count')).to_have_text(str(failed + 1))
    expect(model.locator('.history tr[data-version="3"]')).to_contain_text("paused")
    _shoot(page, "dashboard-halted.png")
