"""The one way to stand up rankcast's parts for tests, benchmarks, the reliability suite and the demo.

broker (Mosquitto with the project's configuration on free loopback ports), devices (a device's home
with its device.toml, as a child process or in a thread), probe (an MQTT client that records what it
receives and waits on device statuses), synthetic (random model files, updates and releases, no
training), waits (bounded polling) and usage (CPU and memory of processes, file limits, RAM scratch).
Imports the product packages only (never the rest of the simulator), and never torch.
"""
