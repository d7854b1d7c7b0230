"""Starting Mosquitto with a prepared data directory: in the foreground (the CLI) or as a child process."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from typing import NoReturn

from broker_config.errors import ToolError
from broker_config.layout import BrokerLayout
from broker_config.tools import find_tool


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (for brokers started by tests and tools)."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` different such ports: each stays bound until all are found, so none is handed out twice."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def broker_command(layout: BrokerLayout) -> list[str]:
    return [find_tool("mosquitto"), "-c", str(layout.config)]


def exec_broker(layout: BrokerLayout) -> NoReturn:
    """Replace this process by Mosquitto; DIR/mosquitto.pid names it (for `kill -HUP` after adduser)."""
    command = broker_command(layout)
    layout.pid_file.write_text(f"{os.getpid()}\n")
    os.execv(command[0], command)


def start_broker(layout: BrokerLayout, log: Path) -> subprocess.Popen:
    """Mosquitto as a child process logging to ``log``; the caller stops it with terminate()."""
    with open(log, "ab") as handle:
        return subprocess.Popen(broker_command(layout), stdout=handle, stderr=subprocess.STDOUT)


def stop_process(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM and wait (Mosquitto saves its database; a device publishes "offline"), SIGKILL after ``timeout``."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def wait_listening(host: str, port: int, process: subprocess.Popen | None = None, timeout: float = 10.0) -> None:
    """Return once ``host:port`` accepts TCP connections; raises ToolError on timeout or broker exit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ToolError(f"mosquitto exited with status {process.returncode}; see its log")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise ToolError(f"mosquitto did not listen on {host}:{port} within {timeout:.0f} s")
