"""Torch modules as devices run them: batch norm folded into the layer before it (folding.py)."""
