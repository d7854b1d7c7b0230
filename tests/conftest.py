"""Test-session settings shared by every folder."""

import os

# tests/device_env checks the torch-free device venv; elsewhere there is nothing for it to check.
collect_ignore = [] if os.environ.get("RANKCAST_DEVICE_ENV") == "1" else ["device_env"]
