"""A device: the updaters of the models it follows, message routing, and its status. No I/O loop.

A transport (device_client.session for paho, or a simulator's own) subscribes to ``wanted_topics()``,
passes every message to ``handle()``, calls ``work()`` when ``has_work()`` (outside its network
callbacks: applying can take a while) and publishes ``status()`` when it changes. ``predictor(model)``
runs a model's current file; it is loaded again after every commit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from codec.errors import UpdateError
from codec.keys import load_verify_key
from codec.limits import DEFAULT_LIMITS, Limits
from codec.topics import manifest_topic, parse_model_topic, parse_root_topic, root_filter
from device_client.config import DeviceConfig
from device_client.errors import ConfigError, RolledBackError
from device_client.predictor import Predictor
from device_client.spool import Spool
from device_client.status import DeviceStatus
from device_client.store import FileModelStore, Installed, ModelStore
from device_client.tflite_runtime import preferred_runtime
from device_client.timefloor import TimeFloor
from device_client.trust import DeviceTrust
from device_client.updater import ModelUpdater, State

log = logging.getLogger("rankcast.device")

#: Reported device state per updater state, busiest first.
_REPORTED = {
    State.APPLYING: "applying", State.VERIFYING: "applying", State.DOWNLOADING: "downloading",
    State.ERROR: "error", State.COMMITTED: "idle", State.IDLE: "idle",
}
#: A model file this large takes long enough to apply on a Pi (copy, patch, hash, fsync) that the device
#: reports "applying" before it starts.
ANNOUNCED_APPLY_BYTES = 1 << 20
_PRIORITY = ("applying", "stalled", "downloading", "error", "rolled-back", "idle")


def _reported(updater: ModelUpdater) -> str:
    """The state one model's updater reports: an operator's rollback holding a release back is not an error."""
    if updater.stalled:
        return "stalled"
    error = updater.last_error
    if updater.state is State.ERROR and error is not None and error.code == RolledBackError.code:
        return "rolled-back"
    return _REPORTED[updater.state]


class Device:
    """Everything one device decides, for every model it follows."""

    def __init__(
        self,
        config: DeviceConfig,
        store: ModelStore | None = None,
        clock: Callable[[], float] = time.time,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.config, self.clock = config, clock
        self._started, self._runtime = time.monotonic(), preferred_runtime()
        self.store = store if store is not None else FileModelStore(config.model_dir)
        self.trust = _trust(config, clock)
        self._predictors: dict[str, Predictor] = {}
        self.updaters = {
            model: ModelUpdater(
                model=model, device_id=config.device_id, store=self.store,
                spool=Spool(config.model_dir / ".spool" / model), trust=self.trust, limits=limits,
                prefix=config.broker.prefix, window=config.client.chunk_window,
                max_steps=config.client.max_chain, stall_after=config.client.stall_after, fleet=config.fleet,
                manifest_wait=config.client.manifest_wait,
                on_commit=lambda installed, model=model: self._committed(model, installed),
            )
            for model in config.models
        }

    @property
    def device_id(self) -> str:
        return self.config.device_id

    def wanted_topics(self) -> set[str]:
        """Every followed model's topics, and the trust roots' in root mode."""
        roots = {root_filter(self.config.broker.prefix)} if self.trust.uses_root else set()
        return roots.union(*(updater.wanted_topics() for updater in self.updaters.values()))

    def handle(self, topic: str, payload: bytes) -> None:
        """Route one message to its model's updater, or a trust root to the trust; never raises (a failure
        becomes last_error)."""
        root_version = parse_root_topic(topic, self.config.broker.prefix)
        if root_version is not None:
            self._on_root(root_version, payload)
            return
        named = parse_model_topic(topic, self.config.broker.prefix)
        updater = self.updaters.get(named.model) if named else None
        if updater is None:
            return
        try:
            if not payload:  # a retained message deleted: only the model's manifest going matters
                if named.is_manifest:
                    updater.on_manifest_deleted()
            elif named.is_manifest:
                updater.on_manifest(payload)
            elif named.is_chunk:
                updater.on_chunk(named.version, named.kind, named.index, payload)
            else:
                updater.on_release_manifest(named.version, named.kind, payload)
        except Exception as exc:  # noqa: BLE001 - a bad message must never stop the client
            log.exception("%s: unexpected failure handling %s", updater.model, topic)
            updater.fail(exc)

    def subscribed(self, topics: set[str]) -> None:
        """The transport subscribed to ``topics``: models whose manifest topic is among them wait for it."""
        for updater in self.updaters.values():
            if manifest_topic(updater.model, self.config.broker.prefix) in topics:
                updater.manifest_subscribed()

    def resubscribe_due(self) -> set[str]:
        """Topics of stalled downloads to subscribe to again now (device_client.updater.resubscribe_due);
        manifests that did not arrive in time after subscribing are reported meanwhile."""
        for updater in self.updaters.values():
            updater.notice_missing()
            updater.reconsider()
        return set().union(*(updater.resubscribe_due() for updater in self.updaters.values()))

    def _on_root(self, version: int, payload: bytes) -> None:
        if not payload:
            return  # a retained root deleted: the device keeps the root it walked to
        try:
            moved = self.trust.on_root(version, payload)
        except Exception:  # noqa: BLE001 - a bad message must never stop the client
            log.exception("unexpected failure handling trust root v%d", version)
            return
        if moved:
            for updater in self.updaters.values():
                updater.reconsider(trust_changed=True)

    def has_work(self) -> bool:
        return any(updater.ready_to_apply for updater in self.updaters.values())

    def long_work(self) -> bool:
        """Whether an apply about to run handles a file of ANNOUNCED_APPLY_BYTES or more, so that saying
        "applying" first is worth a status (a small file's outcome follows within moments)."""
        for updater in self.updaters.values():
            if updater.ready_to_apply:
                installed, download = updater.installed, updater.download
                running = installed.path.stat().st_size if installed and installed.path.exists() else 0
                incoming = download.latest.decompressed_length if download is not None else 0
                if max(running, incoming) >= ANNOUNCED_APPLY_BYTES:
                    return True
        return False

    def work(self) -> None:
        """Apply every complete release; never raises."""
        for updater in self.updaters.values():
            if updater.ready_to_apply:
                try:
                    updater.apply()
                except Exception as exc:  # noqa: BLE001 - a failed apply must never stop the client
                    log.exception("%s: unexpected failure while applying", updater.model)
                    updater.fail(exc)

    def predictor(self, model: str) -> Predictor:
        """The running model of ``model`` (a followed model), loaded on first use and after every commit."""
        if model not in self.updaters:
            raise KeyError(f"this device does not follow model {model!r}")
        return self._predictors.setdefault(model, Predictor(self.store, model))

    def _committed(self, model: str, installed: Installed) -> None:
        predictor = self._predictors.get(model)
        if predictor is not None and predictor.loaded is not None:
            predictor.reload()

    def running_models(self) -> dict[str, tuple[int, bytes]]:
        """Version and sha256 of every installed followed model."""
        installed = {model: updater.installed for model, updater in self.updaters.items()}
        return {model: (i.version, i.sha256) for model, i in installed.items() if i is not None}

    def status(self) -> DeviceStatus:
        """The status to publish now."""
        updaters = list(self.updaters.values())
        states = {_reported(u) for u in updaters}
        state = next(s for s in _PRIORITY if s in states)
        progress = next((p for p in (u.progress() for u in updaters) if p is not None), None)
        failed = [u for u in updaters if u.last_error is not None]
        latest = max(failed, key=lambda u: u.error_time).last_error if failed else None
        running = self.running_models()
        return DeviceStatus(self.device_id, state, running, progress, latest,
                            sent=self.clock(), heartbeat=self.config.client.heartbeat,
                            uptime=time.monotonic() - self._started, runtime=self._runtime,
                            trust=self.trust.status(running))


def _trust(config: DeviceConfig, clock: Callable[[], float]) -> DeviceTrust:
    """Simple mode (trusted_keys) or the provisioned root, with the time floor kept beside the models."""
    directory = config.model_dir / ".trust"
    floor = TimeFloor(directory / "time-floor.json", clock)
    if config.trust_root is not None:
        try:
            return DeviceTrust(directory, floor, provisioned=config.trust_root.read_bytes())
        except UpdateError as exc:
            raise ConfigError(f"trust_root {config.trust_root}: {exc} [{exc.code}]") from None
    keys = {key.key_id: key for key in map(load_verify_key, config.trusted_keys)}
    return DeviceTrust(directory, floor, keys=keys)
