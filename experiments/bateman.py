"""Bateman equations: sensitivity of a physics-informed surrogate (a user-written model and loss).

A radioactive decay chain of m = 3 nuclides, ``dN_1/dt = -l_1 N_1``, ``dN_i/dt = l_{i-1} N_{i-1} -
l_i N_i``, ``N(0) = e_1`` (``hsens_jax.data.bateman``: inputs the rates l_1..l_3 in [0.1, 2] and
the time t in [0, 5], outputs N_1(t)..N_3(t), exact by the matrix exponential). The surrogate is
``experiments/models.py:PerLayerMLP`` (per-layer widths, output activation linear or softplus)
wrapped in ``BatemanNet``, which also returns dN/dt (central difference in t), trained with a
physics-informed loss (``bateman_pinn_loss``): the data misfit plus ``physics_weight`` times the
ODE residual ``|dN/dt - A(l) N|^2`` at the training inputs, where ``physics`` is on. The error
analysed is the validation mean squared error of N.

    python experiments/bateman.py [--quick] [--out DIR]
"""

from __future__ import annotations

import dataclasses

from common import Study, study_main
from models import INITS, OUTPUT_ACTIVATIONS, bateman_pinn
from runge import per_layer_space

import hsens_jax as hs

SETTINGS = {
    "quick": dict(n=2500, n_test=2000, steps=600, n_configs=128, max_depth=3, max_width=64, batch_sizes=(32, 128)),
    "full": dict(n=25000, n_test=10000, steps=20000, n_configs=2048, max_depth=4, max_width=256,
                 batch_sizes=(32, 128, 512)),
}
N_NUCLIDES = 3


def bateman_data(n: int, n_test: int, seed: int = 0) -> hs.Dataset:
    """``n`` draws split 80/20 into train and validation; ``n_test`` independent draws as the test set."""
    ds = hs.load_dataset("bateman", n=n, n_nuclides=N_NUCLIDES, val_fraction=0.2, seed=seed)
    test = hs.load_dataset("bateman", n=n_test, n_nuclides=N_NUCLIDES, val_fraction=0.0, seed=seed + 1)
    return dataclasses.replace(ds, x_test=test.x_train, y_test=test.y_train)


def build(args) -> Study:
    st = SETTINGS[args.mode]
    ds = bateman_data(st["n"], st["n_test"])
    space = hs.Space(per_layer_space(st["max_depth"], 8, st["max_width"]) + [
        hs.Categorical("activation", ["relu", "tanh", "elu", "silu", "sin"]),
        hs.Categorical("init", list(INITS)),
        hs.Categorical("output_activation", list(OUTPUT_ACTIVATIONS)),
        hs.Bool("physics"),
        hs.Float("physics_weight", 1e-3, 1.0, log=True, condition={"physics": True}),
        hs.Categorical("optimizer", ["momentum", "adam", "rmsprop"]),
        hs.Float("momentum", 0.5, 0.99, condition={"optimizer": "momentum"}),
        hs.Float("learning_rate", 1e-4, 3e-2, log=True),
        hs.Float("weight_decay", 1e-8, 1e-3, log=True),
        hs.Categorical("batch_size", list(st["batch_sizes"])),
    ])
    rationale = {
        "depth": "hidden layers; a size knob (cheapest: 1)",
        "activation": "smooth activations suit a smooth solution; `sin` is not in the built-in MLP",
        "init": "LeCun, He or Glorot normal",
        "output_activation": "linear, or softplus to keep abundances non-negative",
        "physics": "whether the loss adds the ODE residual (a physics-informed network)",
        "physics_weight": "weight of the residual, log scale; exists only where `physics` is on",
        "optimizer": "heavy-ball SGD, Adam, RMSProp",
        "momentum": "the momentum optimizer's own setting",
        "learning_rate": "log scale",
        "weight_decay": "L2 regularization, log scale",
        "batch_size": "static: one compiled program per value",
    }
    rationale.update({f"width_{l}": f"units of hidden layer {l}, log scale; a size knob"
                      for l in range(1, st["max_depth"] + 1)})
    return Study(
        name="bateman", title="Bateman equations, user-written physics-informed MLP", dataset=ds,
        data_note=f"decay chain of {N_NUCLIDES} nuclides, inputs (rates in [0.1, 2], t in [0, 5]) -> N(t): "
                  f"{ds.n_train} train / {ds.n_val} validation draws, {len(ds.x_test)} independent test draws",
        space=space, model=bateman_pinn(space, N_NUCLIDES + 1, N_NUCLIDES),
        model_note="user-written Flax MLP with per-layer widths inside `BatemanNet` (returns N and dN/dt) through "
                   "`hs.Model`, with a physics-informed loss (data MSE + `physics_weight` x ODE residual) and metrics "
                   "`mse` and `residual`; widths and depth masked inside one program per batch size",
        fixed={"steps": st["steps"]}, n_configs=st["n_configs"], error="final_val_mse", test="test_mse",
        rationale=rationale, mode=args.mode,
        size_knobs=tuple(["depth"] + [f"width_{l}" for l in range(1, st["max_depth"] + 1)]),
        budget_note=f"{st['steps']} optimizer steps whatever the batch size, float32",
        paper="approximating the solution of the Bateman equations is one of the paper's applications; the chain, "
              "inputs, network and space are not public (the authors' VBSW code has a 13-input Bateman problem "
              "whose generator is not released)")


def main(argv=None):
    return study_main(__doc__, build, argv)


if __name__ == "__main__":
    main()
