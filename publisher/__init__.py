"""The server side of rankcast: train an update, write and patch TFLite files, publish releases.

Four parts, and the torch line between them (tests/architecture proves it):

- ``publisher.models`` (torch): a model as devices run it, with batch norm folded into the layer before it.
- ``publisher.training`` (torch): the factorised method (deltas, quantiser, ranks under a budget,
  training), building an update for a user's model, and the device's view of a model for accuracy.
- ``publisher.tflite``: a torch-free TFLite writer, operator lowering, binding by content and the
  canary; only ``export`` and ``nodes`` (tracing a PyTorch module and lowering its calls) need torch.
- ``publisher.release`` (torch-free): signed releases from update files, the MQTT session, publishing,
  listing and pruning releases, and the fleet's status.

``publisher.errors`` is the one exception hierarchy of all four.
"""
