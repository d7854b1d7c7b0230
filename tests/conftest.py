"""Test-session settings shared by every folder."""

import os

from hypothesis import settings

# tests/device_env checks the torch-free device venv; elsewhere there is nothing for it to check.
collect_ignore = [] if os.environ.get("RANKCAST_DEVICE_ENV") == "1" else ["device_env"]

# This machine is shared and noisy: no per-example deadlines. In CI, the same examples every run,
# so a red build is reproducible; locally, new examples every run, to keep finding bugs.
settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("local", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "local")
