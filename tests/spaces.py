"""Search spaces shared by the space, design and encoding tests."""

from hsens_jax.space import Bool, Categorical, Float, Int, Space


def opt_space():
    """optimizer in {sgd, momentum, adam}; momentum active only for 'momentum'."""
    return Space(
        [
            Categorical("optimizer", ["sgd", "momentum", "adam"]),
            Float("lr", 1e-4, 1e-1, log=True),
            Float("momentum", 0.5, 0.99, condition={"optimizer": "momentum"}),
        ]
    )


def big_space():
    return Space(
        [
            Categorical("optimizer", ["sgd", "momentum", "adam"]),
            Float("lr", 1e-4, 1e-1, log=True),
            Float("momentum", 0.5, 0.99, condition={"optimizer": ["momentum"]}),
            Bool("nesterov", condition={"optimizer": "momentum"}),
            Int("depth", 1, 4),
            Int("width", 8, 512, log=True),
            # grandchild + multiple parents + an Int parent
            Float("wd", 1e-6, 1e-2, log=True, condition={"nesterov": True, "depth": [3, 4]}),
            Bool("bn"),
            Categorical("act", ["relu", 1, 2.5, True]),
        ]
    )
