"""The tuning constants of rank planning under a byte budget, in one place, with their evidence.

Every default below was chosen on the benchmark's two digits models only (a 64-256-256-10 MLP and a
small CNN, 16/32 channels then 512-128-10, on scikit-learn's 8×8 digits; simulator/bench/scenarios.py),
on a validation split carved from the update data (25%, stratified, two training seeds a point) of the
three scenarios refine, drift and newtask; the test split played no part (docs/method.md, "Ranks").
They are defaults for any model, not laws: a model of another shape may want others, which is why
they are fields of one dataclass that the planners take.
"""

from __future__ import annotations

from dataclasses import dataclass

from publisher.errors import ConfigError


@dataclass(frozen=True)
class RankPolicy:
    """How ranks are planned under a budget; see each field for its evidence.

    ``balance``: a seeded layer whose rank unit costs ``u`` codes gets ``scale · (u_max / u) ** balance``
    ranks: 0 is one rank for all, 1 the same codes for every layer. 0.5 was the best of the three, or
    level with it, from 300 to 800 B (mean best accuracy over the six cases at 300 / 400 / 800 B: 0.886
    / 0.922 / 0.958 against 0.801 / 0.890 / 0.950 for one rank for all).

    ``scale_steps``: the balanced scale moves in 1/``scale_steps`` ranks of the widest layer, so budgets
    between two of its ranks still buy rank for the cheaper layers; a resolution, not a measured optimum.

    ``widest_min_rank``: the layers with the widest rank unit (the CNN's 512->128, the MLP's 256->256:
    most of each model's weights) join a seeded plan only from this rank. Leaving them out was 17.7 / 4.6
    / 1.3 points better at 200 / 290 / 420 B, while they would get ranks 1-5, and 0.4-0.5 points worse
    from rank 8-9; 7 sits between.

    ``min_layers_left``: ... and only while this many other layers remain: both validated models had two
    or three; an update of one layer alone (a two-layer model's output layer, a linear probe) was never
    validated.

    ``zero_fractions``: the fractions of zero codes a plan's size is checked with. Uniform codes are
    incompressible, but on payloads of a few hundred bytes zstd spent up to 4% more on codes with
    60-80% zeros (about what trained trit codes have), measured on both models' plans.

    ``record_overhead``: bytes a record costs besides its codes (its head and two bfloat16 scales) in
    payload format 2 after zstd; measured 1-2 B on both digits models' U·V payloads and 3-4 B on
    MobileNetV2's (`rankcast bench records`; it was 37-40 B in format 1).

    ``uniform_share``: with both factors trained, the share of the budget that first buys one uniform
    rank for all before the spectrum decides the rest: a hedge, since on the validation split pure
    spectrum allocation lost to uniform ranks in newtask and won in drift.
    """

    balance: float = 0.5
    scale_steps: int = 4
    widest_min_rank: int = 7
    min_layers_left: int = 2
    zero_fractions: tuple[float, ...] = (0.0, 0.6, 0.7, 0.8)
    record_overhead: int = 4
    uniform_share: float = 0.5

    def __post_init__(self) -> None:
        if not 0 <= self.balance <= 1 or not 0 <= self.uniform_share <= 1:
            raise ConfigError(f"balance and uniform_share must be within 0..1: {self}")
        if self.scale_steps < 1 or self.widest_min_rank < 1 or self.min_layers_left < 1:
            raise ConfigError(f"scale_steps, widest_min_rank and min_layers_left must be at least 1: {self}")
        if not self.zero_fractions or not all(0 <= f < 1 for f in self.zero_fractions):
            raise ConfigError(f"zero_fractions must be fractions in [0, 1): {self.zero_fractions}")
        if self.record_overhead < 0:
            raise ConfigError(f"record_overhead must be at least 0, got {self.record_overhead}")


DEFAULT_POLICY = RankPolicy()
