"""The baselines the factorised method is measured against; each builds a real codec payload."""
