"""The quantiser's step rules: what a factor's codes and scale are before they reach the codec."""

from __future__ import annotations

import torch

from codec.arrays import is_bfloat16, round_to_bfloat16
from publisher.training.quantiser import RMS_STEP, bfloat16_scale, quantise, sign_codes, uniform_codes


def test_ternary_step_is_a_multiple_of_the_rms_and_outliers_clip_to_one_code():
    values = torch.tensor([0.1, -0.1, 0.2, -0.2, 0.0, 5.0])
    codes, scale = uniform_codes(values, 1)
    rms = values.square().mean().sqrt()
    assert scale == bfloat16_scale(rms * RMS_STEP[1])
    assert scale < values.abs().max()  # the outlier does not set the step
    assert codes.tolist() == [0, 0, 0, 0, 0, 1]  # the outlier is clipped; the small values are zeros


def test_the_step_never_exceeds_peak_over_levels():
    values = torch.tensor([1.0, -1.0, 1.0, -1.0])  # RMS 1: the RMS rule would give 1.6, the peak 1.0
    codes, scale = uniform_codes(values, 1)
    assert scale == 1.0
    assert codes.tolist() == [1, -1, 1, -1]


def test_wide_codes_use_peak_over_levels_and_stay_in_range():
    values = torch.linspace(-3, 3, 101)
    codes, scale = uniform_codes(values, 127)
    assert scale == bfloat16_scale(torch.tensor(3 / 127))
    # the bfloat16 step is up to 2^-9 off the peak's, so the peak may be one code short of its value
    assert codes.abs().max() == 127 and torch.allclose(codes * scale, values, atol=float(scale) / 2 + 3 * 2**-9)


def test_sign_codes_take_the_mean_magnitude_and_count_zero_as_plus():
    values = torch.tensor([0.5, -1.5, 0.0, 2.0])
    codes, scale = sign_codes(values)
    assert codes.tolist() == [1, -1, 1, 1]
    assert scale == 1.0
    assert torch.equal(quantise(values, "b1", 1)[0], codes)


def test_all_zero_values_give_zero_codes():
    codes, scale = uniform_codes(torch.zeros(7), 1)
    assert codes.abs().sum() == 0 and scale == 0


def test_scales_are_bfloat16_and_torch_rounds_them_as_the_codec_does():
    values = torch.tensor([1e-3, 3.3e-5, 0.7, 123.456, 2.0**-130, 1 / 3])
    rounded = bfloat16_scale(values)
    assert torch.equal(rounded, torch.from_numpy(round_to_bfloat16(values.numpy())))
    assert is_bfloat16(rounded.numpy()) and not is_bfloat16(values.numpy())
    assert bool(((rounded - values).abs() <= values.abs() * 2**-8).all())  # half a step of 8 bits
    for dtype, levels in (("trit", 1), ("i8", 127), ("b1", 1)):
        assert is_bfloat16(quantise(torch.randn(50), dtype, levels)[1].reshape(1).numpy())
