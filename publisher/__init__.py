"""The server side of rankcast: train an update, write and patch TFLite files, publish releases.

Three parts, and the torch line between them (tests/architecture proves it):

- ``publisher.training`` (torch): the factorised method (deltas, quantiser, ranks under a budget,
  training), building an update for a user's model, and the device's view of a model for accuracy.
- ``publisher.tflite``: a torch-free TFLite writer, operator lowering, binding by content and the
  canary; only ``publisher.tflite.export`` (tracing a PyTorch module) needs torch.
- ``publisher.release`` (torch-free): signed releases from update files, the MQTT session, publishing,
  listing and pruning releases, and the fleet's status.

``publisher.errors`` is the one exception hierarchy of all three.
"""
