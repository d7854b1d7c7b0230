"""`rankcast update build` as a new user meets it: the architecture found in the current directory, and every
mistake in its inputs refused in one coded line with a hint, before any training."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from rankcast.cli import main


@pytest.fixture
def build(files: dict[str, Path], monkeypatch: pytest.MonkeyPatch):
    """``build(*changes, flags=())``: main() on the tiny model in its folder, ``--option value`` pairs replacing
    or adding to the defaults."""
    monkeypatch.chdir(files["base.pt"].parent)

    def run(*changes: str, flags: tuple[str, ...] = ()) -> int:
        options = {"--arch": "tinynet:build", "--base": "base.pt", "--train": "train.npz", "--eval": "eval.npz",
                   "--out": "update.rcu", "--epochs": "1"}
        options.update(zip(changes[::2], changes[1::2], strict=True))
        return main(["update", "build", *[part for pair in options.items() for part in pair], *flags])

    return run


def test_the_architecture_is_imported_from_the_current_directory(build, files, capsys) -> None:
    assert str(files["base.pt"].parent) not in sys.path and "" not in sys.path
    assert build(flags=("--json",)) == 0
    assert '"update_bytes"' in capsys.readouterr().out
    assert str(files["base.pt"].parent) not in sys.path  # only while it imports


@pytest.mark.parametrize(("arch", "hint"), [
    ("nonet:build", "no module nonet in the current directory"),
    ("tinynet:make", "tinynet has no function 'make'"),
    ("tinynet", "must look like MODULE:FACTORY"),
])
def test_an_architecture_that_cannot_be_loaded_is_one_line(build, operator_error, arch: str, hint: str) -> None:
    assert build("--arch", arch) == 1
    assert hint in operator_error("bad-model")


def test_a_model_file_given_as_base_says_where_it_goes(build, files, operator_error) -> None:
    assert build("--base", str(files["deployed.rcw"])) == 1
    line = operator_error("bad-model")
    assert "is a .rcw model file" in line and "state_dict" in line and "--deployed" in line


@pytest.mark.parametrize("content", [b"", b"not a pickle", b"PK\x03\x04 not a zip"])
def test_a_base_that_is_no_state_dict_is_one_line(build, files, operator_error, content: bytes) -> None:
    (files["base.pt"].parent / "odd.pt").write_bytes(content)
    assert build("--base", "odd.pt") == 1
    assert "torch.save(model.state_dict()" in operator_error("bad-model")


def test_a_state_dict_of_another_model_names_what_differs(build, files, operator_error) -> None:
    import torch

    torch.save(torch.nn.Linear(16, 5).state_dict(), files["base.pt"].parent / "other.pt")
    assert build("--base", "other.pt") == 1
    line = operator_error("bad-model")
    assert "missing 1.weight" in line and "unexpected weight, bias" in line


def test_a_checkpoint_is_told_which_entry_to_save(build, files, operator_error) -> None:
    import torch

    torch.save({"model": torch.load(files["base.pt"]), "epoch": 3}, files["base.pt"].parent / "checkpoint.pt")
    assert build("--base", "checkpoint.pt") == 1
    assert "checkpoint['model']" in operator_error("bad-model")


@pytest.mark.parametrize(("arrays", "hint"), [
    ({"x": np.zeros((8, 12), np.float32), "y": np.zeros(8, np.int64)}, "cannot take x of shape [8, 12]"),
    ({"x": np.zeros((8, 16), np.float32), "y": np.full(8, 4)}, "labels run 4..4, but the model has 4 outputs"),
    ({"x": np.zeros((8, 16), np.float32), "labels": np.zeros(8, np.int64)}, "arrays named x and y"),
    ({"x": np.zeros((8, 16), np.float32), "y": np.zeros(7, np.int64)}, "as many labels as inputs"),
    ({"x": np.zeros((8, 16), np.float32), "y": np.zeros(8, np.float32)}, "integer class labels"),
])
def test_data_that_does_not_fit_the_model_is_refused_before_training(build, files, operator_error, arrays,
                                                                      hint: str) -> None:
    np.savez(files["base.pt"].parent / "odd.npz", **arrays)
    assert build("--train", "odd.npz") == 1
    line = operator_error("bad-data")
    assert "odd.npz" in line and hint in line


def test_out_model_needs_the_deployed_file(build, operator_error) -> None:
    assert build("--out-model", "v2.rcw") == 1
    assert "give --deployed FILE" in operator_error("bad-config")


def test_an_output_never_overwrites_an_input(build, files, operator_error) -> None:
    assert build("--deployed", "deployed.rcw", "--out-model", "deployed.rcw") == 1
    assert "would overwrite --deployed" in operator_error("bad-config")


def test_search_options_beside_a_fixed_size_are_refused(build, operator_error) -> None:
    assert build("--rank", "2", "--max-bytes", "500") == 1
    assert "leave out --rank and --budget" in operator_error("bad-config")


def test_a_target_accuracy_in_percent_is_refused_with_the_fraction_to_give(build, operator_error) -> None:
    assert build("--target-accuracy", "95") == 1
    assert "0.95 for 95%" in operator_error("bad-config")


def test_an_unreachable_target_writes_no_update(build, files, capsys) -> None:
    assert build("--target-accuracy", "1.0", "--max-bytes", "200") == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]  # after the trainings the search showed
    assert line.startswith("rankcast: error [target-not-reached]: ")
    assert "no update of at most 200 bytes reached the target 100.0%" in line and "--max-bytes" in line
    assert not (files["base.pt"].parent / "update.rcu").exists()
