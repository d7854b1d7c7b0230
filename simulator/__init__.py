"""The harness around the product: stand it up, emulate fleets and links, measure it, attack it.

Four rooms, each importing only those before it (tests/architecture/test_layers.py):

- ``simulator.testbed``: one way to start a broker, a device (process or thread) or a probe, and synthetic
  model files and releases; used by the tests, the fleet, the benchmarks, the reliability suite and the demo.
- ``simulator.fleet``: emulated radio links, thousands of real device clients on one event loop, a fleet
  run per strategy, its report.
- ``simulator.bench``: the update benchmark (scenarios, methods and baselines, plot), the codec and the
  fleet-scale benchmarks, and a trained update on a scenario.
- ``simulator.reliability``: the reliability and security suite of `rankcast selftest`.

``simulator.simulate`` (`rankcast simulate`) and ``simulator.demo`` (`rankcast demo`) compose them.
"""
