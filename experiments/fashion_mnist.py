"""Fashion-MNIST (standing in for Cifar): a user-written residual CNN through ``hs.Model``.

The paper's second image application is "Cifar"; without CIFAR-10 files on a CPU machine,
Fashion-MNIST stands in for it, with the network family the authors used for Cifar-10 in their
previous work (ResNet; VBSW's README: "A ResNet20 ... for Cifar10"): a small residual CNN
written in Flax (``experiments/models.py:ResidualCNN``) and plugged into the engine through
``hs.Model``. Its width (channels) and depth (residual blocks) are traced and masked, so one
program per batch size trains every architecture of the space. ``experiments/cifar10.py`` runs
the same study on CIFAR-10 when its files are present.

    python experiments/fashion_mnist.py [--quick] [--out DIR] [--data-dir DIR]

Quick mode pools the images to 7x7, trains 2000 of them for 3 epochs with at most 16 channels and
one residual block, one batch size and fewer choices (a CPU budget: a CNN program takes minutes
to compile on a 2-core CPU); without the files it falls back to the bundled 8x8 digits (and says so);
``hsens data fetch fashion-mnist`` downloads them.
"""

from __future__ import annotations

from common import load_images, Study, study_main
from models import INITS, residual_cnn

import hsens_jax as hs

SETTINGS = {
    "quick": dict(n_train=2000, n_val=500, n_test=1000, pool=4, epochs=3, n_configs=64, max_channels=16,
                  max_blocks=1, batch_sizes=(64,), activations=("relu", "elu"), optimizers=("momentum", "adam"),
                  n_evals=4),
    "full": dict(n_train=50000, n_val=10000, n_test=None, pool=1, epochs=10, n_configs=512, max_channels=64,
                 max_blocks=3, batch_sizes=(32, 64, 128, 256), activations=("relu", "elu", "gelu"),
                 optimizers=("momentum", "adam", "adamw", "rmsprop"), n_evals=20),
}


def cnn_space(max_channels: int, max_blocks: int, batch_sizes, activations, optimizers) -> hs.Space:
    """The residual CNN's space; with a single batch size, `batch_size` is fixed (not in the space)."""
    params = [
        hs.Int("channels", 2, max_channels, log=True),
        hs.Int("blocks", 0, max_blocks),
        hs.Categorical("activation", list(activations)),
        hs.Categorical("init", list(INITS)),
        hs.Bool("batch_norm"),
        hs.Float("dropout", 0.0, 0.5),
        hs.Categorical("optimizer", list(optimizers)),
        hs.Float("momentum", 0.5, 0.99, condition={"optimizer": "momentum"}),
        hs.Float("learning_rate", 1e-4, 0.3, log=True),
        hs.Float("weight_decay", 1e-6, 1e-2, log=True),
        hs.Categorical("schedule", ["constant", "cosine"]),
        hs.Float("label_smoothing", 0.0, 0.2),
    ]
    if len(batch_sizes) > 1:
        params.append(hs.Categorical("batch_size", list(batch_sizes)))
    return hs.Space(params)


RATIONALE = {
    "channels": "3x3 channels of the stem and of every block, log scale; a size knob (cheapest: 2)",
    "blocks": "residual blocks after the stem (0: stem and classifier only); a size knob",
    "activation": "nonlinearity of every block",
    "init": "weight initialization (LeCun, He or Glorot normal), a categorical of the user's model",
    "batch_norm": "batch normalization inside every block, or none",
    "dropout": "dropout before the classifier",
    "optimizer": "among heavy-ball SGD, Adam, AdamW (decoupled weight decay), RMSProp",
    "momentum": "the momentum optimizer's own setting",
    "learning_rate": "log scale",
    "weight_decay": "L2 (decoupled for AdamW)",
    "schedule": "constant or cosine-decayed learning rate",
    "batch_size": "static: one compiled program per value",
    "label_smoothing": "the loss: cross-entropy against smoothed targets",
}


def image_cnn_study(name: str, title: str, args, settings, paper: str) -> Study:
    st = settings[args.mode]
    ds, note = load_images(name, n_train=st["n_train"], n_val=st["n_val"], n_test=st["n_test"],
                           data_dir=args.data_dir, quick=args.mode == "quick", pool=st["pool"])
    space = cnn_space(st["max_channels"], st["max_blocks"], st["batch_sizes"], st["activations"], st["optimizers"])
    fixed = {"epochs": st["epochs"]}
    if len(st["batch_sizes"]) == 1:
        fixed["batch_size"] = st["batch_sizes"][0]
    model = residual_cnn(space, ds.input_shape, ds.output_dim, name="residual_cnn")
    return Study(
        name=name, title=title, dataset=ds, data_note=note, space=space, model=model,
        model_note="user-written Flax residual CNN (`experiments/models.py: ResidualCNN`) through `hs.Model`: "
                   "stem 3x3 convolution, `blocks` basic residual blocks (two 3x3 convolutions each, no "
                   "downsampling), global average pooling, dropout, dense classifier; channels and blocks masked "
                   "inside one program per batch size; parameter and FLOP counts of each configuration's active "
                   "network from the model's counting hooks",
        fixed=fixed, n_configs=st["n_configs"], error="final_val_accuracy",
        test="test_accuracy" if ds.x_test is not None else None, rationale=RATIONALE, mode=args.mode,
        size_knobs=("channels", "blocks"), n_evals=st["n_evals"],
        budget_note=f"{st['epochs']} epochs, float32"
                    + ("; one batch size (each value compiles its own program, and a CNN program costs minutes "
                       "to compile on a CPU)" if len(st["batch_sizes"]) == 1 else ""), paper=paper)


def build(args) -> Study:
    return image_cnn_study(
        "fashion_mnist", "Fashion-MNIST (standing in for Cifar), user-written residual CNN", args, SETTINGS,
        paper="the paper's second image application is Cifar (10 or 100 is not stated in the reachable text); "
              "its network, space and indices are not public. Fashion-MNIST stands in because CIFAR-10's files "
              "cannot be fetched on the machine these numbers were computed on")


def main(argv=None):
    return study_main(__doc__, build, argv)


if __name__ == "__main__":
    main()
