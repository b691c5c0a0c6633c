"""Write the tutorial notebooks (``notebooks/*.ipynb``) from the cells below, without outputs.

    python notebooks/build_notebooks.py

The notebooks are generated so that their source stays reviewable here; they are committed
without outputs and executed by the test suite (``tests/notebooks``) with
``HSENS_NOTEBOOK_QUICK=1``, which every notebook reads to shrink its budgets.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SETUP = """\
import os
import numpy as np
import hsens_jax as hs

# The test suite sets HSENS_NOTEBOOK_QUICK=1 to run this notebook with tiny budgets.
QUICK = os.environ.get("HSENS_NOTEBOOK_QUICK") == "1"
"""

SPACE_TO_HSIC = [
    new_markdown_cell("""\
# From a search space to a sweep to HSIC

This tutorial walks the whole pipeline of hsens_jax on the bundled 8x8 digits (no download):

1. describe a **search space** with conditional hyperparameters,
2. draw a **design** from it,
3. train every configuration in one **vectorized sweep** (`jax.vmap` over configurations),
4. ask which hyperparameters the validation accuracy depends on, with **HSIC**, globally and
   for the best runs only (goal-oriented HSIC, Novello et al. 2023).

It runs in a minute or two on a laptop CPU."""),
    new_code_cell(SETUP),
    new_markdown_cell("""\
## 1. The search space

`momentum` exists only where the optimizer is heavy-ball SGD: in the configurations it is NaN
elsewhere, and the analysis scores it on the runs where it is active."""),
    new_code_cell("""\
space = hs.Space([
    hs.Float("learning_rate", 1e-3, 1.0, log=True),
    hs.Categorical("optimizer", ["sgd", "momentum"]),
    hs.Float("momentum", 0.5, 0.99, condition={"optimizer": "momentum"}),
    hs.Float("weight_decay", 1e-6, 1e-2, log=True),
    hs.Int("width", 8, 32 if QUICK else 128, log=True),
    hs.Int("depth", 1, 2),
    hs.Categorical("activation", ["relu", "tanh"]),
])
space"""),
    new_markdown_cell("""\
## 2. A design

A scrambled Sobol design fills the space evenly. Configurations are a dict of columns (categorical
choices as indices, NaN where inactive); `space.decode` shows them as Python values."""),
    new_code_cell("""\
n_configs = 16 if QUICK else 128
configs = hs.design.sample(space, n_configs, kind="sobol", seed=0)
space.decode(configs)[:3]"""),
    new_markdown_cell("""\
## 3. The sweep

`run_sweep` groups configurations by what changes array shapes (here nothing: the built-in MLP
masks width and depth inside one program sized for the largest network), compiles one
`jit(vmap(train))` program per group and trains all configurations together. Each run records
its losses, accuracy, parameter count, FLOPs and whether it diverged."""),
    new_code_cell("""\
dataset = hs.load_dataset("digits")
result = hs.run_sweep(dataset, space, configs, fixed={"epochs": 2 if QUICK else 10, "batch_size": 64},
                      progress=False)
print(result.table("final_val_accuracy", k=5))"""),
    new_markdown_cell("""\
## 4. HSIC: which hyperparameters matter

`analyze` normalizes every hyperparameter to [0, 1] as Novello et al. do (so that floats,
integers and categories share one Gaussian kernel) and returns, per hyperparameter, the R2-HSIC
of the unbiased U-statistic with a permutation p-value (1000 permutations) and the number of runs
it used."""),
    new_code_cell("""\
report = hs.analyze(result, ["final_val_accuracy"])
print(report.table())
report.plot();"""),
    new_markdown_cell("""\
## Goal-oriented HSIC

Which hyperparameters decide whether a run is among the **best 25%**? The output becomes the
indicator of the best fraction, and the index measures how different the best runs'
hyperparameters are from all runs'. A hyperparameter can matter globally (it ruins some runs) and
not for the best ones, or the reverse."""),
    new_code_cell("""\
goal = hs.analyze(result, ["final_val_accuracy"], target=0.25)
print(goal.table())"""),
    new_markdown_cell("""\
With 16 configurations (quick mode) every index is marked *small n*: rankings need more runs
(the full notebook trains 128). `experiments/mnist.py` runs the same analysis at scale, with interactions and a cross-check by
fANOVA and PED-ANOVA."""),
]

SOBOL_MORRIS = [
    new_markdown_cell("""\
# Sobol and Morris indices of a sweep objective

Sobol indices and Morris screening need the objective at points of *their own* designs (Saltelli's
matrices, Morris trajectories), not at a given sample. `hs.sweep_objective` turns "train this
model with these hyperparameters and report the validation loss" into a plain function
`f(configs) -> (N,)` that trains all N configurations in one vectorized sweep; the estimators of
`hsens_jax.sensitivity` then call it on their designs."""),
    new_code_cell(SETUP + """
from hsens_jax.sensitivity import morris, sobol
"""),
    new_code_cell("""\
dataset = hs.load_dataset("digits")
space = hs.Space([
    hs.Float("learning_rate", 1e-3, 0.5, log=True),
    hs.Float("momentum", 0.0, 0.95),
    hs.Float("weight_decay", 1e-6, 1e-1, log=True),
    hs.Float("dropout", 0.0, 0.5),
])
fixed = {"optimizer": "momentum", "width": 32, "depth": 1, "batch_size": 64, "steps": 60 if QUICK else 400}
# chunk_size fixes the shape of every training call, so the Sobol and Morris designs reuse one program
f = hs.sweep_objective(dataset, space, objective="final_val_loss", fixed=fixed, chunk_size=32)"""),
    new_markdown_cell("""\
## Sobol indices

`sobol(f, space, n)` draws Saltelli's design of `n (d + 2)` configurations (n a power of two),
trains them and returns first-order (S1) and total (ST) indices with bootstrap intervals. A
total index well above the first-order one means the hyperparameter acts through interactions."""),
    new_code_cell("""\
s = sobol(f, space, n=4 if QUICK else 64, seed=0)
print(s.table())"""),
    new_markdown_cell("""\
## Morris screening

Morris' elementary effects are cheaper: `r (d + 1)` trainings. `mu_star` ranks the
hyperparameters by their mean absolute effect, `sigma` flags nonlinear or interacting ones."""),
    new_code_cell("""\
m = morris(f, space, r=4 if QUICK else 20, seed=0)
print(m.table())"""),
    new_code_cell("""\
print("Sobol ST ranking:  ", [space.names[i] for i in np.argsort(-np.asarray(s.ST))])
print("Morris mu* ranking:", [space.names[i] for i in np.argsort(-np.asarray(m.mu_star))])
print("trainings:", f.last_result.n_configs, "in the last call")"""),
    new_markdown_cell("""\
In quick mode the designs are far too small for stable indices (the intervals say so); the full
settings (`HSENS_NOTEBOOK_QUICK` unset) train 384 configurations for Sobol and 100 for Morris."""),
]

HYPERGRAD_DGSM = [
    new_markdown_cell("""\
# Hypergradients and DGSM

Continuous hyperparameters (learning rate, weight decay, momentum...) enter training smoothly, so
the validation loss after training has a derivative with respect to them: a **hypergradient**,
computed here by differentiating through the whole training run (forward mode). A hypergradient per
point of a design gives **DGSM**, the derivative-based global sensitivity measure
`nu_i = E[(dY/du_i)^2]` on the unit cube, whose `nu_i / (pi^2 Var Y)` bounds the total Sobol index
(Sobol and Kucherenko 2009)."""),
    new_code_cell(SETUP + """
import jax
from hsens_jax.engine import program
from hsens_jax.hypergrad import hypergradient, hypergradient_dgsm
"""),
    new_markdown_cell("""\
## One configuration's program

`hsens_jax.engine.program(dataset, values, model=...)` builds the training program of one
configuration: a static `spec` (model, steps, batch size) and the `data` arrays."""),
    new_code_cell("""\
dataset = hs.load_dataset("digits")
values = {"optimizer": "sgd", "learning_rate": 0.1, "weight_decay": 1e-3, "width": 32, "depth": 1,
          "activation": "tanh", "batch_size": 64, "steps": 40 if QUICK else 300}
spec, data = program(dataset, values, model="mlp")
key = jax.random.key(0)"""),
    new_code_cell("""\
g = hypergradient(spec, data, values, key, wrt=("learning_rate", "weight_decay"))
print("validation loss:", float(g.value))
for name in ("learning_rate", "weight_decay"):
    print(f"dL/dlog({name}) = {float(g.grad[name]):+.5f}")"""),
    new_markdown_cell("""\
## Checking it against finite differences

`grad` is in natural coordinates: `dL/dlog(x)` for the log-scaled learning rate and weight decay.
A central difference of the trained loss in `log(learning_rate)` should agree."""),
    new_code_cell("""\
h = 1e-2
wrt = ("learning_rate", "weight_decay")  # the same call as above: its compiled program is reused
def loss_at(lr):
    return float(hypergradient(spec, data, {**values, "learning_rate": lr}, key, wrt=wrt).value)
fd = (loss_at(values["learning_rate"] * np.exp(h)) - loss_at(values["learning_rate"] * np.exp(-h))) / (2 * h)
print(f"hypergradient {float(g.grad['learning_rate']):+.5f}, finite difference {fd:+.5f}")"""),
    new_markdown_cell("""\
## DGSM over a space

`hypergradient_dgsm` draws a design of the space's continuous hyperparameters, takes one
hypergradient per point and averages the squared unit-cube derivatives."""),
    new_code_cell("""\
space = hs.Space([hs.Float("learning_rate", 1e-3, 0.5, log=True), hs.Float("weight_decay", 1e-6, 1e-1, log=True)])
fixed = {k: v for k, v in values.items() if k not in space.names}
dg = hypergradient_dgsm(spec, data, space, key, n=4 if QUICK else 32, fixed=fixed)
for name, nu, share, bound in zip(dg.names, dg.nu, dg.nu_normalized, dg.total_upper_bound):
    print(f"{name:14s} nu = {nu:.3g} ({share:.0%} of the total), total Sobol index <= {bound:.3g}")"""),
    new_markdown_cell("""\
A hyperparameter with a small share of `nu` and a small bound on its total Sobol index can be
fixed without changing the validation loss much over this range; the bound needs no Sobol design."""),
]

NOTEBOOKS = {
    "01_space_sweep_hsic.ipynb": SPACE_TO_HSIC,
    "02_sobol_morris_sweep.ipynb": SOBOL_MORRIS,
    "03_hypergradients_dgsm.ipynb": HYPERGRAD_DGSM,
}


def build(directory: Path = HERE) -> list[Path]:
    paths = []
    for name, cells in NOTEBOOKS.items():
        nb = new_notebook(cells=cells, metadata={
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"}})
        for i, cell in enumerate(nb.cells):
            cell["id"] = f"{Path(name).stem[:2]}-{i:02d}"
        path = directory / name
        nbformat.write(nb, path)
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in build():
        print(p)
