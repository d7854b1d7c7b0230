"""TFLite files on the server: write them, export PyTorch modules to them, bind weights, sign a canary.

writer (flatbuffer serialisation), ops (lowering layers to operators with their layouts), bind (find
PyTorch weights inside any .tflite by content) and canary (the outputs devices check before a swap)
are torch-free; export (tracing a PyTorch module with torch.fx) and nodes (its calls as operators) need torch.
"""
