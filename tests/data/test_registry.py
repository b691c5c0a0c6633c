"""Tests for hsens_jax.data.registry: load_dataset by name."""

import pytest

from hsens_jax.data import DATASETS, load_dataset


def test_load_dataset_dispatch_and_errors():
    with pytest.raises(ValueError) as info:
        load_dataset("Image-Net")
    assert "'Image-Net'" in str(info.value)  # the name as given
    for name in DATASETS:
        assert repr(name) in str(info.value)
    with pytest.raises(TypeError, match="unexpected arguments \\['noise'\\]"):
        load_dataset("digits", noise=0.1)
    d = load_dataset("runge", n=50, noise=0.0, seed=2)
    assert d.name == "runge" and d.n_train + d.n_val == 50
    b = load_dataset("bateman", n=40, n_nuclides=2, val_fraction=0.5)
    assert b.input_shape == (3,) and b.output_dim == 2 and b.n_val == 20

