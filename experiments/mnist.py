"""MNIST: which hyperparameters of the built-in MLP decide its error, and its cost (Novello et al. 2023).

The paper's MNIST space is not public; this one follows its description (mixed types, conditional
hyperparameters, the knobs of the authors' in-house framework) and is trained by the built-in
masked MLP, so that every width, depth, activation, dropout rate, batch-norm switch and optimizer
of the space shares one compiled program per batch size. Conditional hyperparameters: each
optimizer's own setting (``momentum`` for heavy-ball SGD, ``b1`` for Adam, ``rms_decay`` for
RMSProp) exists only where that optimizer is chosen.

    python experiments/mnist.py [--quick] [--out DIR] [--data-dir DIR]

Writes ``OUT/mnist/`` (see ``experiments/common.py``). Without the MNIST files, ``--quick`` falls
back to the bundled 8x8 digits (and says so); ``hsens data fetch mnist`` downloads them.
"""

from __future__ import annotations

from common import load_images, Study, study_main

import hsens_jax as hs

SETTINGS = {
    "quick": dict(n_train=4000, n_val=1000, n_test=2000, epochs=2, n_configs=64, max_width=128, max_depth=3,
                  batch_sizes=(32, 128)),
    "full": dict(n_train=50000, n_val=10000, n_test=None, epochs=10, n_configs=1024, max_width=1024, max_depth=4,
                 batch_sizes=(32, 64, 128, 256)),
}


def mlp_space(max_width: int, max_depth: int, batch_sizes) -> hs.Space:
    """The MLP search space shared by the MNIST study and the HSIC-based optimization."""
    return hs.Space([
        hs.Int("depth", 1, max_depth),
        hs.Int("width", 16, max_width, log=True),
        hs.Categorical("activation", ["relu", "tanh", "elu", "sigmoid"]),
        hs.Float("dropout", 0.0, 0.5),
        hs.Bool("batch_norm"),
        hs.Float("init_scale", 0.5, 2.0),
        hs.Categorical("optimizer", ["sgd", "momentum", "adam", "rmsprop"]),
        hs.Float("momentum", 0.5, 0.99, condition={"optimizer": "momentum"}),
        hs.Float("b1", 0.8, 0.99, condition={"optimizer": "adam"}),
        hs.Float("rms_decay", 0.8, 0.99, condition={"optimizer": "rmsprop"}),
        hs.Float("learning_rate", 1e-4, 0.3, log=True),
        hs.Float("weight_decay", 1e-6, 1e-2, log=True),
        hs.Categorical("batch_size", list(batch_sizes)),
        hs.Float("label_smoothing", 0.0, 0.2),
    ])


RATIONALE = {
    "depth": "hidden layers; a size knob (cheapest: 1)",
    "width": "units per hidden layer, log scale; a size knob (cheapest: 16)",
    "activation": "the activations of the authors' framework",
    "dropout": "per-layer dropout of the authors' framework, one rate for all layers",
    "batch_norm": "batch normalization after every hidden layer, or none",
    "init_scale": "initialization: weights N(0, s^2/fan_in); s = 1 is LeCun, s = sqrt(2) He",
    "optimizer": "the four optimizers of the authors' framework (heavy-ball SGD stands in for Adagrad)",
    "momentum": "the momentum optimizer's own setting",
    "b1": "Adam's own setting (first-moment decay)",
    "rms_decay": "RMSProp's own setting",
    "learning_rate": "log scale over three and a half decades, so that every optimizer has good and bad values",
    "weight_decay": "L2 regularization (decoupled for none of these optimizers)",
    "batch_size": "static: one compiled program per value",
    "label_smoothing": "the loss: cross-entropy against smoothed targets (0 = plain cross-entropy)",
}


def build(args) -> Study:
    st = SETTINGS[args.mode]
    ds, note = load_images("mnist", n_train=st["n_train"], n_val=st["n_val"], n_test=st["n_test"],
                           data_dir=args.data_dir, quick=args.mode == "quick")
    space = mlp_space(st["max_width"], st["max_depth"], st["batch_sizes"])
    return Study(
        name="mnist", title="MNIST, built-in MLP", dataset=ds, data_note=note, space=space, model="mlp",
        model_note="the built-in masked MLP (`model=\"mlp\"`): every configuration trained inside one program per "
                   "batch size sized for the space's largest network; output layer on the last active layer",
        fixed={"epochs": st["epochs"]}, n_configs=st["n_configs"], error="final_val_accuracy",
        test="test_accuracy" if ds.x_test is not None else None, rationale=RATIONALE, mode=args.mode,
        size_knobs=("depth", "width"),
        budget_note=f"{st['epochs']} epochs (an epoch is n_train // batch_size steps), float32",
        paper="MNIST is one of the paper's four applications; its network, space, budget and indices are not "
              "public (only the abstract is reachable)")


def main(argv=None):
    return study_main(__doc__, build, argv)


if __name__ == "__main__":
    main()
