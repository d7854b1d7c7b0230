"""Steering a published release: its rollout widened, narrowed or paused by a new manifest alone (steer),
and staged waves that watch the fleet and halt a failing release (waves, tally, state, driver)."""
