"""Devices for tests and the reliability suite: a device's home with its device.toml, run as a child
process (`rankcast device run`) or as the real client in a thread of this process.

    home = DeviceHome.create(workdir / "dev", broker, device_id, "digits", public_key)
    home.install("digits", model_file, version=1)
    with DeviceProcess(home) as device:                # python -m rankcast device run --config ...
        ...
    home.state("digits")                               # what is on disk, read without recovery

``device_config`` is the one place that says how a testbed device is configured and ``render_config``
the one writer of device.toml in the harness (tests that feed the parser malformed files write theirs
by hand); a fleet's in-process devices take the DeviceConfig directly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from broker_config import stop_process
from codec.apply import file_sha256
from codec.topics import BrokerUrl
from device_client import Device, load_config, run_device
from device_client.config import BrokerSettings, ClientSettings, DeviceConfig
from device_client.store import FileModelStore, Installed
from simulator.testbed.broker import Broker
from simulator.testbed.usage import memory_mib

#: Quick reconnects and status updates: tests wait on them.
QUICK_CLIENT = ClientSettings(backoff_initial=0.05, backoff_max=0.5, status_interval=0.2, connect_timeout=5)
#: The repository root: device processes run with it as their working directory and on PYTHONPATH.
ROOT = Path(__file__).resolve().parents[2]


def device_config(home: Path, broker: Broker, device_id: str, models: str | Sequence[str],
                  trusted_keys: Path | Sequence[Path], *, url: str | None = None,
                  client: ClientSettings = QUICK_CLIENT, fleet: str | None = None,
                  trust_root: Path | None = None) -> DeviceConfig:
    """A device of ``broker`` with its models in HOME/models, on the broker's TLS listener unless ``url``
    names another way in (the plain listener, a link in front of it), in ``fleet`` if given; with
    ``trust_root`` it is provisioned with that root instead of ``trusted_keys`` (pass ())."""
    broker_url = BrokerUrl.parse(url or broker.url)
    return DeviceConfig(
        device_id=device_id,
        model_dir=Path(home).resolve() / "models",
        trusted_keys=(trusted_keys,) if isinstance(trusted_keys, Path) else tuple(trusted_keys),
        models=(models,) if isinstance(models, str) else tuple(models),
        broker=BrokerSettings(broker_url, device_id, broker.device_password,
                              broker.layout.ca_cert if broker_url.tls else None, prefix=broker.prefix),
        client=client,
        fleet=fleet,
        trust_root=None if trust_root is None else Path(trust_root).resolve(),
    )


def render_config(config: DeviceConfig) -> str:
    """``config`` as device.toml text (absolute paths); device_client.config.load_config reads it back."""
    settings = config.broker
    broker = {"url": str(settings.url), "username": settings.username, "password_file": settings.password_file,
              "cafile": settings.cafile, "prefix": settings.prefix, "keepalive": settings.keepalive}
    client = {field.name: getattr(config.client, field.name) for field in fields(config.client)}
    lines = [f"device_id = {_toml(config.device_id)}", f"model_dir = {_toml(config.model_dir)}",
             f"trust_root = {_toml(config.trust_root)}" if config.trust_root is not None else
             f"trusted_keys = [{', '.join(_toml(key) for key in config.trusted_keys)}]",
             f"models = [{', '.join(_toml(model) for model in config.models)}]"]
    lines += [] if config.fleet is None else [f"fleet = {_toml(config.fleet)}"]
    lines += ["", "[broker]"]
    lines += [f"{key} = {_toml(value)}" for key, value in broker.items() if value is not None]
    lines += ["", "[client]", *(f"{key} = {_toml(value)}" for key, value in client.items())]
    return "\n".join(lines) + "\n"


def _toml(value: object) -> str:
    return json.dumps(str(value)) if isinstance(value, str | Path) else repr(value)


@dataclass(frozen=True)
class DeviceHome:
    """A device's directory: device.toml, models/ (its store) and device.log."""

    root: Path

    @classmethod
    def create(cls, root: Path, broker: Broker, device_id: str, models: str | Sequence[str],
               trusted_keys: Path | Sequence[Path], *, url: str | None = None,
               client: ClientSettings = QUICK_CLIENT, fleet: str | None = None,
               trust_root: Path | None = None) -> DeviceHome:
        """Write ROOT/device.toml for ``device_config``'s device."""
        home = cls(Path(root).resolve())
        home.root.mkdir(parents=True, exist_ok=True)
        config = device_config(home.root, broker, device_id, models, trusted_keys, url=url, client=client,
                               fleet=fleet, trust_root=trust_root)
        home.config_path.write_text(render_config(config))
        return home

    @property
    def config_path(self) -> Path:
        return self.root / "device.toml"

    @property
    def model_dir(self) -> Path:
        return self.root / "models"

    @property
    def log(self) -> Path:
        return self.root / "device.log"

    def store(self) -> FileModelStore:
        return FileModelStore(self.model_dir)

    def install(self, model: str, model_file: bytes, version: int) -> None:
        """Register ``model_file`` as the running ``model`` at ``version`` (what `rankcast device install` does)."""
        install_model(self.model_dir, model, model_file, version)

    def model_file(self, model: str) -> bytes:
        """The bytes of the file the device runs now."""
        return self.store().model_path(model).read_bytes()

    def state(self, model: str) -> tuple[int | None, str | None, str | None]:
        """(version state.json names, its sha256 hex, sha256 hex of the running file's bytes), read without
        the store's crash recovery: what a power cut left on disk (read once the device is gone)."""
        directory = self.model_dir / model
        state_path = directory / "state.json"
        current = (json.loads(state_path.read_text()) if state_path.exists() else {}).get("current") or {}
        running = directory / f"model{current.get('suffix', '.rcw')}"
        return current.get("version"), current.get("sha256"), file_sha256(running).hex() if running.exists() else None

    def installed(self, model: str) -> tuple[int, str] | None:
        """(version, sha256 hex) of the running model after the store's crash recovery, or None."""
        found = self.store().current(model)
        return (found.version, found.sha256.hex()) if found else None

    def spooled(self, model: str) -> set[int]:
        """Indices of the chunks the device holds in its spool right now."""
        return {int(p.name) for p in (self.model_dir / ".spool" / model).glob("*/chunks/*") if p.name.isdigit()}

    def staged(self, model: str) -> list[Path]:
        """Staged copies left beside the running model (a finished or refused apply leaves none)."""
        return list((self.model_dir / model).glob(".staged-*"))


def install_model(model_dir: Path, model: str, model_file: bytes, version: int = 1) -> Installed:
    """Install ``model_file`` as ``version`` of ``model`` in the store at ``model_dir``."""
    source = Path(model_dir).parent / f".install-{model}-{version}"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_bytes(model_file)
    try:
        return FileModelStore(model_dir).install(model, source, version)
    finally:
        source.unlink()


class DeviceProcess:
    """`python -m rankcast device run --config HOME/device.toml` as a child process, output in HOME/device.log.

    ``preexec_fn`` runs in the child before exec (resource limits). A context manager that stops it.
    """

    def __init__(self, home: DeviceHome, preexec_fn: Callable[[], None] | None = None) -> None:
        self.home = home
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        with open(home.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "rankcast", "device", "run", "--config", str(home.config_path)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
                env={**os.environ, "PYTHONPATH": path}, preexec_fn=preexec_fn,
            )

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def memory_mib(self, field: str = "VmHWM") -> float:
        """The process's peak (VmHWM) or current (VmRSS) resident memory, MiB."""
        return memory_mib(self.process.pid, field)

    def kill(self) -> None:
        """SIGKILL, as a power cut would, and wait for the process to be gone."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM (the device publishes "offline") and wait; SIGKILL if it does not end."""
        stop_process(self.process)

    def __enter__(self) -> DeviceProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class DeviceThread:
    """The real device client (device_client.run_device) of a home, in a thread of this process."""

    def __init__(self, home: DeviceHome) -> None:
        self.home = home
        self.device = Device(load_config(home.config_path))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=run_device, args=(self.device, self._stop), daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def version(self, model: str) -> int | None:
        running = self.device.running_models().get(model)
        return running[0] if running else None

    def stop(self, wait: bool = True) -> None:
        """Ask the client to stop (it publishes "offline" and disconnects) and wait up to 10 s for it."""
        self._stop.set()
        if wait:
            self._thread.join(timeout=10)
            if self._thread.is_alive():
                raise TimeoutError("the device client did not stop within 10 s")
