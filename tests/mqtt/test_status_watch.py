"""`rankcast status --watch` against a real broker: it prints the fleet again every few seconds, with each
device's uptime, until interrupted."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from publisher.release.fleet_status import read_fleet
from simulator.testbed import synthetic
from simulator.testbed.broker import PUBLISHER
from simulator.testbed.waits import wait_for


def test_watch_reprints_the_fleet_until_interrupted(broker, device_ids, make_device, model_id) -> None:
    (device_id,) = device_ids(1)
    make_device(broker, device_id, model_id, synthetic.random_model_file(3))
    with broker.publisher() as session:
        wait_for(lambda: read_fleet(session, broker.prefix, model_id).devices, "the device's status retained")
    login = ["--broker", broker.operator_url, "--username", PUBLISHER, "--password-file",
             str(broker.layout.credential(PUBLISHER)), "--cafile", str(broker.layout.ca_cert)]
    process = subprocess.Popen([sys.executable, "-m", "rankcast", "status", *login, "--model", model_id, "--watch",
                                "0.5"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(4.0)
    finally:
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=30)
    assert process.returncode == 130, out
    headers = [line for line in out.splitlines() if "every 0.5 s (Ctrl-C stops)" in line]
    rows = [line for line in out.splitlines() if line.startswith(device_id)]
    assert len(headers) >= 3 and len(rows) == len(headers), out
    assert all(" s ago " in row for row in rows), "last seen and uptime on every row"
