from pathlib import Path

import pytest

from hsens_jax.config import SweepConfig

EXPERIMENTS = sorted((Path(__file__).resolve().parents[1] / "experiments").glob("*.toml"))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_experiment_configs_parse_and_design(path):
    config = SweepConfig.load(path)
    configs = config.make_design()
    config.space.validate(configs)
    assert len(next(iter(configs.values()))) > 0
