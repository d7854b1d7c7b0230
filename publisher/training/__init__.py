"""The method in PyTorch: frozen weights W, trainable factors so each layer becomes W + U·V.

quantiser (the device's arithmetic in torch), deltas and delta_set (trainable deltas that export codec
records), factorised (which layers, which factor is seeded), rank_policy, plan_bytes, balanced_ranks and
spectrum_ranks (ranks under a byte budget), loop, fit and finetune (training), reconstruct (the model a
device rebuilds), update and from_files (building an update for a user's model). Every module but
rank_policy (plain data) needs torch.
"""
