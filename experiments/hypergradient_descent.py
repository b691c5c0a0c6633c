"""Hypergradient descent on the digits: tune learning rate and weight decay on the validation loss.

Each iteration trains an MLP (200 SGD steps) from the same initialization and batch order,
takes the forward-mode hypergradient of the final validation loss with respect to
log(learning rate) and log(weight decay), and steps downhill in log space
(Maclaurin et al. 2015; Franceschi et al. 2017; Micaelli and Storkey 2021).

    python experiments/hypergradient_descent.py [--iters 10]
"""

import argparse
import time

import jax

from hsens_jax.data import load_dataset
from hsens_jax.hypergrad import hypergradient_descent
from hsens_jax.engine.builtin import sized_model
from hsens_jax.space import Float, Space
from hsens_jax.engine.train import TrainSpec, prepare_data


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--iters", type=int, default=10, help="hypergradient steps (default 10)")
    p.add_argument("--steps", type=int, default=200, help="training steps per iterate (default 200)")
    args = p.parse_args()
    ds = load_dataset("digits")
    data = prepare_data(ds)
    spec = TrainSpec(sized_model("mlp", 64, 1, 10, tuple(ds.input_shape), ("tanh",)), "classification",
                     batch_size=64, n_steps=args.steps, n_train=ds.n_train, optimizers=("sgd",))
    space = Space([Float("learning_rate", 1e-4, 1.0, log=True), Float("weight_decay", 1e-6, 1e-1, log=True)])
    start = {"learning_rate": 1e-3, "weight_decay": 1e-2, "optimizer": "sgd", "activation": "tanh", "width": 64,
             "depth": 1}
    t0 = time.perf_counter()
    tr = hypergradient_descent(spec, data, start, jax.random.key(0), n_iters=args.iters, meta_lr=10.0,
                               max_step=0.5, space=space)
    print(f"{args.iters} hypergradient steps in {time.perf_counter() - t0:.1f} s (compilation included)\n")
    print(f"{'iter':>4}  {'learning_rate':>13}  {'weight_decay':>12}  {'val loss':>9}  {'dL/dlog lr':>11}  {'dL/dlog wd':>11}")
    for i in range(args.iters + 1):
        print(f"{i:4d}  {tr.values['learning_rate'][i]:13.4g}  {tr.values['weight_decay'][i]:12.4g}  "
              f"{tr.objective[i]:9.4f}  {tr.grads['learning_rate'][i]:11.4f}  {tr.grads['weight_decay'][i]:11.4f}")
    print(f"\nbest: {tr.best} with validation loss {tr.best_objective:.4f}")


if __name__ == "__main__":
    main()
