"""A physics-informed loss of one's own on the Bateman decay chain, with its weight swept.

The data set (:func:`hsens_jax.data.bateman`) maps decay rates and a time ``(l_1..l_m, t)``
to the abundances ``N_1(t)..N_m(t)`` of the chain ``dN_1/dt = -l_1 N_1``,
``dN_i/dt = l_{i-1} N_{i-1} - l_i N_i``. The module returns the abundances and their time
derivative (``nn.jvp`` of the network along ``t``); the loss adds to the data error the
weighted residual of the equations, ``physics_weight * mean((dN/dt - A(l) N)^2)``. The
weight is a hyperparameter like any other: traced, swept, analysed with HSIC, and
differentiated through training.
"""

from __future__ import annotations

import argparse

import flax.linen as nn
import jax
import jax.numpy as jnp

import hsens_jax as hs


class Body(nn.Module):
    width: int
    depth: int
    n_out: int

    @nn.compact
    def __call__(self, x):
        for _ in range(self.depth):
            x = jnp.tanh(nn.Dense(self.width)(x))
        return nn.Dense(self.n_out)(x)


class BatemanNet(nn.Module):
    """Outputs ``{"n": N(t), "dndt": dN/dt}`` for inputs ``(rates, t)``."""

    width: int
    depth: int
    n_nuclides: int = 3

    @nn.compact
    def __call__(self, x, train: bool = False):
        rates, t = x[:, :-1], x[:, -1:]
        body = Body(self.width, self.depth, self.n_nuclides)
        n, dndt = nn.jvp(lambda mdl, t: mdl(jnp.concatenate([rates, t], -1)), body, (t,), (jnp.ones_like(t),), {})
        return {"n": n, "dndt": dndt}


def residual(outputs, rates):
    """``dN/dt - A(l) N`` of the decay chain, per example and nuclide."""
    n, dndt = outputs["n"], outputs["dndt"]
    feed = jnp.concatenate([jnp.zeros_like(n[:, :1]), rates[:, :-1] * n[:, :-1]], axis=1)
    return dndt - (feed - rates * n)


def loss(outputs, batch, hp):
    """Data error plus the weighted residual of the equations (means over the batch)."""
    data_error = jnp.mean((outputs["n"] - batch["y"]) ** 2)
    physics = jnp.mean(residual(outputs, batch["x"][:, :-1]) ** 2)
    return data_error + hp["physics_weight"] * physics


def metrics(outputs, batch, hp):
    """The data error alone (what the network is for) and the equations' residual."""
    return {"mse": jnp.mean((outputs["n"] - batch["y"]) ** 2),
            "residual": jnp.mean(residual(outputs, batch["x"][:, :-1]) ** 2)}


MODEL = hs.Model(lambda hp: BatemanNet(hp["width"], hp["depth"]), loss=loss, metrics=metrics,
                 directions={"mse": "minimize", "residual": "minimize"}, name="bateman-pinn")

SPACE = hs.Space([
    hs.Float("learning_rate", 1e-3, 3e-2, log=True),
    hs.Float("physics_weight", 1e-3, 1.0, log=True),
    hs.Categorical("width", [16, 32]),
    hs.Int("depth", 1, 2),
])

FIXED = {"optimizer": "adam", "batch_size": 64}


def run(n_configs: int = 16, epochs: float = 20, n: int = 2000, progress=False, space: hs.Space = SPACE,
        fixed=None):
    """Sweep a Sobol design of ``space`` (``fixed`` sets the others), analyse the data error and
    the residual, and differentiate the validation loss."""
    data = hs.load_dataset("bateman", n=n)
    result = hs.run_sweep(data, space, space.sample(n_configs, "sobol", seed=0), model=MODEL,
                          fixed={**FIXED, **(fixed or {}), "epochs": epochs}, n_evals=4, progress=progress)
    report = hs.analyze(result, ["final_val_mse", "final_val_residual"], pvalue="gamma")
    from hsens_jax.hypergrad import hypergradient

    values = {"learning_rate": 0.01, "physics_weight": 0.1, "width": 16, "depth": 1, "epochs": epochs, **FIXED}
    spec, train_data = hs.engine.program(data, values, model=MODEL)
    grad = hypergradient(spec, train_data, values, jax.random.key(0), wrt=("learning_rate", "physics_weight"))
    return result, report, grad


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny sweep (seconds)")
    args = parser.parse_args(argv)
    result, report, grad = run(8, 2, 400) if args.quick else run()
    print(result.table("final_val_mse", k=5))
    print(report.table())
    print("d validation loss / d log(hyperparameter):", {k: float(v) for k, v in grad.grad.items()})


if __name__ == "__main__":
    main()
