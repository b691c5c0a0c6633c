"""Runge's function: sensitivity of an MLP regressor with per-layer widths (a user-written model).

``y = 1 / (1 + 25 (x - 0.5)^2)`` on [0, 1] (``hsens_jax.data.runge``; the form of the authors'
VBSW code). The network is ``experiments/models.py:PerLayerMLP`` through ``hs.Model``: depth and
a width per hidden layer (``width_l`` exists only where ``depth >= l``, a threshold condition on
an integer parent), a choice of activation that includes ``sin``, of initialization and of loss
(mean squared or mean absolute error). The error analysed is the validation mean squared error
whatever loss trained the network; the test error is the mean squared error on 1000 equispaced
points of [0, 1].

    python experiments/runge.py [--quick] [--out DIR]
"""

from __future__ import annotations

import dataclasses

import numpy as np

from common import Study, study_main
from models import INITS, REGRESSION_DIRECTIONS, REGRESSION_LOSSES, per_layer_mlp, regression_loss, regression_metrics

import hsens_jax as hs

SETTINGS = {
    "quick": dict(n=320, steps=500, n_configs=128, max_depth=3, max_width=32, batch_sizes=(32, 256)),
    "full": dict(n=1280, steps=10000, n_configs=2048, max_depth=4, max_width=128, batch_sizes=(16, 64, 256, 1024)),
}


def runge_data(n: int, seed: int = 0) -> hs.Dataset:
    """``n`` uniform points split 80/20 into train and validation, and 1000 equispaced test points."""
    ds = hs.load_dataset("runge", n=n, val_fraction=0.2, seed=seed)
    x_test = np.linspace(0.0, 1.0, 1000, dtype=np.float32)[:, None]
    y_test = (1.0 / (1.0 + 25.0 * (x_test - 0.5) ** 2)).astype(np.float32)
    return dataclasses.replace(ds, x_test=x_test, y_test=y_test)


def per_layer_space(max_depth: int, low: int, high: int) -> list:
    """``depth`` and ``width_1 .. width_D``, ``width_l`` active where ``depth >= l``."""
    params = [hs.Int("depth", 1, max_depth), hs.Int("width_1", low, high, log=True)]
    params += [hs.Int(f"width_{l}", low, high, log=True, condition={"depth": {"ge": l}})
               for l in range(2, max_depth + 1)]
    return params


def build(args) -> Study:
    st = SETTINGS[args.mode]
    ds = runge_data(st["n"])
    space = hs.Space(per_layer_space(st["max_depth"], 4, st["max_width"]) + [
        hs.Categorical("activation", ["relu", "tanh", "elu", "sigmoid", "sin"]),
        hs.Categorical("init", list(INITS)),
        hs.Categorical("optimizer", ["sgd", "momentum", "adam", "rmsprop"]),
        hs.Float("momentum", 0.5, 0.99, condition={"optimizer": "momentum"}),
        hs.Float("learning_rate", 1e-4, 0.1, log=True),
        hs.Float("weight_decay", 1e-8, 1e-3, log=True),
        hs.Categorical("batch_size", [b for b in st["batch_sizes"] if b <= ds.n_train] or [ds.n_train]),
        hs.Categorical("loss", list(REGRESSION_LOSSES)),
    ])
    model = per_layer_mlp(space, 1, 1, loss=regression_loss, metrics=regression_metrics,
                          directions=REGRESSION_DIRECTIONS, name="per_layer_mlp")
    rationale = {
        "depth": "hidden layers; a size knob (cheapest: 1)",
        "activation": "`sin` added to the usual ones: a smooth periodic basis suits a smooth target",
        "init": "LeCun, He or Glorot normal",
        "optimizer": "the engine's optimizers; Adagrad of the authors' framework is not among them",
        "momentum": "the momentum optimizer's own setting",
        "learning_rate": "log scale",
        "weight_decay": "L2 regularization, log scale",
        "batch_size": f"static; {max(st['batch_sizes'])} = the whole training set (full batch, as in the authors' "
                      "Runge setups) when it fits",
        "loss": "training loss: mean squared or mean absolute error (the error analysed is always the MSE)",
    }
    rationale.update({f"width_{l}": f"units of hidden layer {l}, log scale; a size knob"
                      for l in range(1, st["max_depth"] + 1)})
    return Study(
        name="runge", title="Runge function, user-written per-layer MLP", dataset=ds,
        data_note=f"Runge's function 1/(1 + 25 (x - 0.5)^2), x uniform on [0, 1]: {ds.n_train} train / {ds.n_val} "
                  f"validation points; test: 1000 equispaced points",
        space=space, model=model,
        model_note="user-written Flax MLP with a width per layer (`experiments/models.py: PerLayerMLP`) through "
                   "`hs.Model`, with its own loss (MSE or MAE, a traced categorical) and metric (`mse`); widths and "
                   "depth masked inside one program per batch size",
        fixed={"steps": st["steps"]}, n_configs=st["n_configs"], error="final_val_mse", test="test_mse",
        rationale=rationale, mode=args.mode, size_knobs=tuple(["depth"] + [f"width_{l}" for l in
                                                                           range(1, st["max_depth"] + 1)]),
        budget_note=f"{st['steps']} optimizer steps whatever the batch size (so full-batch runs are not starved), "
                    "float32",
        paper="approximating Runge's function is one of the paper's applications; its setup is not public (the "
              "function's form is that of the authors' VBSW code)")


def main(argv=None):
    return study_main(__doc__, build, argv)


if __name__ == "__main__":
    main()
