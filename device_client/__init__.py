"""The device side of rankcast: follow models over MQTT, verify and apply releases, report status.

Imports the codec, paho-mqtt, numpy and the standard library only (never torch). The pieces:
config (device.toml), store (the running models, RCW or .tflite), spool (chunks on disk), updater (one
model's state machine), predictor (runs the current .tflite model; the canary check), device (all
followed models, no I/O), session and runner (paho and reconnects).
"""

from device_client.config import DeviceConfig, load_config
from device_client.device import Device
from device_client.errors import (
    BadInputError,
    CanaryError,
    ConfigError,
    DeviceError,
    NoPreviousError,
    NoRuntimeError,
    NotInstalledError,
    NotRunnableError,
    RolledBackError,
)
from device_client.predictor import Predictor
from device_client.runner import run_device
from device_client.session import DeviceSession
from device_client.status import DeviceStatus, LastError, Progress
from device_client.store import FileModelStore, Installed, ModelStore
from device_client.updater import ModelUpdater, State

__all__ = [
    "BadInputError", "CanaryError", "ConfigError", "Device", "DeviceConfig", "DeviceError", "DeviceSession",
    "DeviceStatus", "FileModelStore", "Installed", "LastError", "ModelStore", "ModelUpdater", "NoPreviousError",
    "NoRuntimeError", "NotInstalledError", "NotRunnableError", "Predictor", "Progress", "RolledBackError", "State",
    "load_config", "run_device",
]
