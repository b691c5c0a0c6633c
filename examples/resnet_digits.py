"""A user-written residual CNN on the bundled 8x8 digits, swept, analysed and differentiated.

What it shows: any Flax (linen) module enters the engine through :class:`hsens_jax.Model`.

* static hyperparameters (they change array shapes): ``blocks`` (an Int: the engine finds it
  must be static, by tracing the model once) and ``channels`` (a Categorical: static by
  default), so the sweep compiles one program per (blocks, channels) pair;
* traced hyperparameters, vmapped inside each program: ``learning_rate`` and ``weight_decay``
  (read by the engine's optimizer), ``dropout`` (read by the module, through
  :class:`hsens_jax.Dropout`, which takes a traced rate), ``label_smoothing`` (read by the
  built-in cross-entropy).

Run ``python -m examples.resnet_digits`` for a small sweep, its HSIC report and a
hypergradient; ``--quick`` makes everything tiny.
"""

from __future__ import annotations

import argparse

import flax.linen as nn
import jax

import hsens_jax as hs


class Block(nn.Module):
    """conv -> relu -> dropout -> conv, plus the identity."""

    channels: int
    dropout: float

    @nn.compact
    def __call__(self, x, train: bool):
        h = nn.relu(nn.Conv(self.channels, (3, 3))(x))
        h = hs.Dropout(self.dropout)(h, deterministic=not train)
        return nn.relu(x + nn.Conv(self.channels, (3, 3))(h))


class ResNet(nn.Module):
    """A stem convolution, ``blocks`` residual blocks, global average pooling, a dense head."""

    blocks: int
    channels: int
    dropout: float = 0.0
    n_classes: int = 10

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(nn.Conv(self.channels, (3, 3))(x))
        for _ in range(self.blocks):
            x = Block(self.channels, self.dropout)(x, train)
        return nn.Dense(self.n_classes)(x.mean(axis=(1, 2)))


def make_model(hp) -> nn.Module:
    """The factory the engine calls with each configuration's hyperparameters."""
    return ResNet(blocks=hp["blocks"], channels=hp["channels"], dropout=hp["dropout"])


MODEL = hs.Model(make_model, name="resnet")

SPACE = hs.Space([
    hs.Float("learning_rate", 1e-3, 3e-2, log=True),
    hs.Float("weight_decay", 1e-5, 1e-2, log=True),
    hs.Float("dropout", 0.0, 0.4),
    hs.Float("label_smoothing", 0.0, 0.2),
    hs.Int("blocks", 1, 2),
    hs.Categorical("channels", [4, 8]),
])

FIXED = {"optimizer": "adamw", "batch_size": 32}


def run(n_configs: int = 16, epochs: float = 3, n_train: int | None = None, run_dir=None, progress=False,
        space: hs.Space = SPACE, fixed=None):
    """Sweep a Sobol design of ``space`` (``fixed`` sets the others), analyse it, and differentiate
    one configuration's validation loss."""
    data = hs.load_dataset("digits", n_train=n_train)
    configs = space.sample(n_configs, "sobol", seed=0)
    result = hs.run_sweep(data, space, configs, model=MODEL, fixed={**FIXED, **(fixed or {}), "epochs": epochs},
                          n_evals=4, run_dir=run_dir, progress=progress)
    report = hs.analyze(result, "final_val_loss", pvalue="gamma")
    from hsens_jax.hypergrad import hypergradient

    values = {"learning_rate": 0.01, "weight_decay": 1e-3, "dropout": 0.1, "label_smoothing": 0.05,
              "blocks": 1, "channels": 4, "epochs": epochs, **FIXED}
    spec, train_data = hs.engine.program(data, values, model=MODEL)
    grad = hypergradient(spec, train_data, values, jax.random.key(0),
                         wrt=("learning_rate", "weight_decay", "label_smoothing"))
    return result, report, grad


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny sweep (seconds)")
    args = parser.parse_args(argv)
    result, report, grad = run(8, 1, 400) if args.quick else run()
    print(result.table(k=5))
    print(report.table())
    print("d final_val_loss / d log(hyperparameter):", {k: float(v) for k, v in grad.grad.items()})


if __name__ == "__main__":
    main()
