"""Folders saved by the release before the core refactor (tests/fixtures/previous_release/, written by its code)
load with today's code, give bit-identical outputs, and save back to a byte-identical ``config.json``."""
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import smp_like
from previous_release_models import NAMES, build, probe

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "previous_release"


@pytest.mark.parametrize("name", NAMES)
def test_previous_release_folder_loads_with_identical_outputs(name, tmp_path):
    folder = FIXTURES / name
    model = smp_like.from_pretrained(folder)
    inputs = load_file(str(folder / "probe_inputs.safetensors"))
    expected = load_file(str(folder / "probe_outputs.safetensors"))
    got = probe(name, model, inputs)
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert torch.equal(got[key], value), (name, key, (got[key] - value).abs().max())
    # Saving again writes the same config.json, byte for byte.
    model.save_pretrained(tmp_path / name)
    assert (tmp_path / name / "config.json").read_bytes() == (folder / "config.json").read_bytes()


@pytest.mark.parametrize("name", NAMES)
def test_same_model_built_today_saves_the_previous_config(name, tmp_path):
    """The same constructor call writes the same config.json as the previous release did."""
    build(name).save_pretrained(tmp_path / name)
    assert (tmp_path / name / "config.json").read_bytes() == (FIXTURES / name / "config.json").read_bytes()
