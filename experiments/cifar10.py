"""CIFAR-10: the residual-CNN study of ``fashion_mnist.py`` on the data set the paper used.

Runs only where the CIFAR-10 files are present (``hsens data fetch cifar10``); otherwise it says
so, writes ``OUT/cifar10/cifar10.md`` recording that the study was skipped and why, and exits
with status 0 (``reproduce.py`` goes on with the other studies).

    python experiments/cifar10.py [--quick] [--out DIR] [--data-dir DIR]

Quick mode pools the 32x32 images to 8x8, with the reduced settings of ``fashion_mnist.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from common import DataUnavailable, arguments, run_study, setup_devices
from fashion_mnist import image_cnn_study

SETTINGS = {
    "quick": dict(n_train=2000, n_val=500, n_test=1000, pool=4, epochs=3, n_configs=64, max_channels=16,
                  max_blocks=1, batch_sizes=(64,), activations=("relu", "elu"), optimizers=("momentum", "adam"),
                  n_evals=4),
    "full": dict(n_train=45000, n_val=5000, n_test=None, pool=1, epochs=20, n_configs=512, max_channels=64,
                 max_blocks=3, batch_sizes=(32, 64, 128, 256), activations=("relu", "elu", "gelu"),
                 optimizers=("momentum", "adam", "adamw", "rmsprop"), n_evals=20),
}


def build(args):
    return image_cnn_study("cifar10", "CIFAR-10, user-written residual CNN", args, SETTINGS,
                           paper="Cifar is one of the paper's applications; its network, space and indices are "
                                 "not public")


def main(argv=None):
    args = arguments(__doc__.split("\n")[0], argv)
    try:
        study = build(args)
    except DataUnavailable as e:
        out = Path(args.out) / "cifar10"
        out.mkdir(parents=True, exist_ok=True)
        print(f"[cifar10] skipped: {e}", file=sys.stderr)
        (out / "summary.json").write_text(json.dumps({"study": "cifar10", "mode": args.mode,
                                                      "skipped": "CIFAR-10 files not found (hsens data fetch cifar10)"}))
        (out / "cifar10.md").write_text(
            "### CIFAR-10, user-written residual CNN\n\n*Not run*: the CIFAR-10 files were not found on the machine "
            "that produced these results (`hsens data fetch cifar10` downloads them; then `python "
            "experiments/cifar10.py` runs this study with the space and model of the Fashion-MNIST study).\n")
        return None
    device = setup_devices()
    return run_study(study, args, device=device)


if __name__ == "__main__":
    main()
