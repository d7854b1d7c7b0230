"""The end-to-end TFLite suite reuses the MQTT suite's harness (a real Mosquitto set up by broker_config,
real device clients in threads) and the device suite's release recipes."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).parents[1] / "mqtt"), str(Path(__file__).parents[1] / "device_client")]
