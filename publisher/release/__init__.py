"""Releases on their way to devices, torch-free: build, publish over MQTT, list, prune, fleet status.

build (a signed release from an update file or a whole model file), session (a blocking MQTT 5 session
with every acknowledgement checked), publish (chunks then manifests; list and prune retained releases),
fleet_status (every device's retained status, summarised) and roots (the trust roots on the broker).
"""
