"""Benchmarks that print figures: update bytes against accuracy (scenarios, methods, baselines/, updates,
plot), codec throughput (codec), fleet scale (scale); and a trained update on a scenario (trained), which
`rankcast simulate --scenario` and the demo roll out.
"""
