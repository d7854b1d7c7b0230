"""The baselines the factorised method is measured against, each building a real codec payload: the full
model and the fine-tune delta (full_finetune), zstd patch-from (patch), top-k sparse (topk), Konečný's
structured low rank (konecny) and 1-bit sign deltas (bitdelta). simulator.bench.methods sweeps them.
"""
