"""User-written Flax models of the experiments, plugged into the engine through ``hs.Model``.

They show what the toolkit asks of a model of one's own (see :class:`hsens_jax.Model`): a module
factory ``hp -> flax.linen.Module``, and optionally a loss, metrics with directions, and the two
counting hooks. Every architecture knob is *traced*: each module is built once at the largest
size of its search space, and a configuration's size masks units, channels and layers inside
that one compiled program (as the built-in MLP does), so a sweep over widths, depths and
activations compiles one program per batch size, not one per architecture.

* :class:`PerLayerMLP`: ``depth`` hidden layers with their own widths ``width_1 .. width_D``
  (``width_l`` is a conditional hyperparameter, active where ``depth >= l``), a choice of
  activation (``sin`` included, which the built-in MLP lacks), of initialization (LeCun, He or
  Glorot normal), dropout, batch norm and an output activation.
* :class:`ResidualCNN`: a stem convolution then ``blocks`` residual blocks of ``channels``
  3x3 channels (two convolutions each, optional batch norm), global average pooling, dropout,
  a dense classifier.
* :func:`bateman_pinn_loss`: a physics-informed loss for the Bateman equations: the data
  misfit plus ``physics_weight`` times the residual of ``dN/dt = A(lambda) N`` at the training
  inputs (``dN/dt`` of the network by a central difference in ``t``).

:class:`CountedModel` overrides the two counting hooks of :class:`hsens_jax.Model` so that the
engine records each configuration's *active* parameter count and forward FLOPs (a masked
network of width 8 built inside a width-64 program has the parameters of a width-8 network),
not those of the program's largest network.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import hsens_jax as hs
from hsens_jax.engine.builtin import conv_same

ACTIVATIONS: dict[str, Callable] = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "elu": jax.nn.elu,
    "gelu": jax.nn.gelu,
    "sigmoid": jax.nn.sigmoid,
    "silu": jax.nn.silu,
    "sin": jnp.sin,
}
"""Activations the user-written models offer, by name."""

INITS = ("lecun_normal", "he_normal", "glorot_normal")
"""Weight initializations: N(0, s^2) with s^2 = 1/fan_in, 2/fan_in, 2/(fan_in + fan_out)."""

OUTPUT_ACTIVATIONS = ("linear", "softplus")


def _select(index, options: Sequence[Callable], z):
    """``options[index](z)`` for a traced ``index`` (every option computed, one selected)."""
    if len(options) == 1:
        return options[0](z)
    return jnp.select([index == i for i in range(len(options))], [f(z) for f in options])


def _init_std(init_index, fan_in, fan_out):
    """Standard deviation of the chosen initialization (:data:`INITS`), traced."""
    stds = jnp.stack([1.0 / jnp.sqrt(fan_in), jnp.sqrt(2.0 / fan_in), jnp.sqrt(2.0 / (fan_in + fan_out))])
    return stds[init_index]


class _MaskedDense(nn.Module):
    """Dense layer of ``features`` units of which the first ``width`` (traced) are active."""

    features: int

    @nn.compact
    def __call__(self, h, fan_in, width, init):
        dtype = h.dtype
        fan_in = jnp.asarray(fan_in, dtype)
        fan_out = jnp.asarray(width, dtype)

        def kernel_init(key, shape, dtype=dtype):
            return jax.random.normal(key, shape, dtype) * _init_std(init, fan_in, fan_out)

        kernel = self.param("kernel", kernel_init, (h.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,), dtype)
        return h @ kernel + bias


class PerLayerMLP(nn.Module):
    """MLP with a traced depth and a traced width per hidden layer (masked inside one program).

    Attributes (static): ``max_width``, ``max_depth``, ``n_out``, ``activations`` (names in
    :data:`ACTIVATIONS`), ``output_activations`` (names in :data:`OUTPUT_ACTIVATIONS`),
    ``use_batch_norm``, ``use_dropout`` (compile those paths in).
    Attributes (traced scalars): ``depth`` (int, 1..max_depth), ``widths`` (max_depth ints;
    entries beyond ``depth`` are ignored), ``activation``, ``init_kind`` (the ``init`` hyperparameter), ``output_activation``
    (indices), ``batch_norm`` (bool), ``dropout`` (rate in [0, 1)).

    Input (batch, *shape), flattened; output (batch, n_out).
    """

    max_width: int
    max_depth: int
    n_out: int
    activations: tuple[str, ...]
    output_activations: tuple[str, ...] = ("linear",)
    use_batch_norm: bool = False
    use_dropout: bool = False
    depth: Any = 1
    widths: Any = ()
    activation: Any = 0
    init_kind: Any = 0
    output_activation: Any = 0
    batch_norm: Any = False
    dropout: Any = 0.0

    @nn.compact
    def __call__(self, x, train: bool = False):
        h = x.reshape(x.shape[0], -1)
        fan_in = h.shape[-1]
        acts = [ACTIVATIONS[a] for a in self.activations]
        for layer in range(self.max_depth):
            width = self.widths[layer]
            z = _MaskedDense(self.max_width, name=f"dense_{layer}")(h, fan_in, width, self.init_kind)
            if self.use_batch_norm:
                bn = nn.BatchNorm(use_running_average=not train, momentum=0.9, name=f"bn_{layer}")(z)
                z = jnp.where(self.batch_norm, bn, z)
            a = _select(self.activation, acts, z) * (jnp.arange(self.max_width) < width).astype(z.dtype)
            if self.use_dropout:
                a = hs.Dropout(self.dropout)(a, deterministic=not train)
            h = a if layer == 0 else jnp.where(layer < self.depth, a, h)
            fan_in = jnp.where(layer < self.depth, width, fan_in) if layer else width
        out = _MaskedDense(self.n_out, name="output")(h, fan_in, self.n_out, self.init_kind)
        outs = [{"linear": lambda z: z, "softplus": jax.nn.softplus}[a] for a in self.output_activations]
        return _select(self.output_activation, outs, out)


class ResidualCNN(nn.Module):
    """Stem 3x3 convolution, ``blocks`` residual blocks, global average pooling, dense classifier.

    Every block is ``x + conv(act(bn(conv(x))))`` followed by the activation (He et al. 2016's
    basic block without downsampling, so that a skipped block is an exact identity); the
    convolutions are :func:`hsens_jax.engine.builtin.conv_same` (shifted matrix products, which
    vectorize over configurations on a CPU where XLA's grouped convolutions do not).

    Static: ``max_channels``, ``max_blocks``, ``n_out``, ``activations``, ``use_batch_norm``,
    ``use_dropout``. Traced: ``channels`` (active channels), ``blocks`` (0..max_blocks),
    ``activation``, ``init_kind`` (the ``init`` hyperparameter; indices), ``batch_norm``, ``dropout``.
    """

    max_channels: int
    max_blocks: int
    n_out: int
    activations: tuple[str, ...]
    use_batch_norm: bool = False
    use_dropout: bool = False
    channels: Any = 8
    blocks: Any = 1
    activation: Any = 0
    init_kind: Any = 0
    batch_norm: Any = False
    dropout: Any = 0.0

    def _conv(self, h, c_in_active, name):
        dtype = h.dtype
        fan_in = 9 * jnp.asarray(c_in_active, dtype)
        fan_out = 9 * jnp.asarray(self.channels, dtype)

        def kernel_init(key, shape, dtype=dtype):
            return jax.random.normal(key, shape, dtype) * _init_std(self.init_kind, fan_in, fan_out)

        kernel = self.param(f"{name}_kernel", kernel_init, (3, 3, h.shape[-1], self.max_channels))
        bias = self.param(f"{name}_bias", nn.initializers.zeros, (self.max_channels,), dtype)
        return conv_same(h, kernel) + bias

    def _norm(self, z, train, name):
        if not self.use_batch_norm:
            return z
        bn = nn.BatchNorm(use_running_average=not train, momentum=0.9, name=name)(z)
        return jnp.where(self.batch_norm, bn, z)

    @nn.compact
    def __call__(self, x, train: bool = False):
        if x.ndim != 4:
            raise ValueError(f"ResidualCNN expects images (batch, H, W, C), got shape {x.shape}")
        acts = [ACTIVATIONS[a] for a in self.activations]
        mask = (jnp.arange(self.max_channels) < self.channels).astype(x.dtype)
        act = lambda z: _select(self.activation, acts, z) * mask  # noqa: E731
        h = act(self._norm(self._conv(x, x.shape[-1], "stem"), train, "stem_bn"))
        for b in range(self.max_blocks):
            r = act(self._norm(self._conv(h, self.channels, f"block{b}_a"), train, f"block{b}_bn_a"))
            r = self._norm(self._conv(r, self.channels, f"block{b}_b"), train, f"block{b}_bn_b")
            h = jnp.where(b < self.blocks, act(h + r * mask), h)
        h = h.mean(axis=(1, 2))
        if self.use_dropout:
            h = hs.Dropout(self.dropout)(h, deterministic=not train)
        return _MaskedDense(self.n_out, name="classifier")(h, self.channels, self.n_out, self.init_kind)


# ----------------------------------------------------------------------------- counting


@dataclasses.dataclass(frozen=True, eq=False)
class CountedModel(hs.Model):
    """:class:`hsens_jax.Model` whose parameter and FLOP counts are per configuration.

    ``count(values) -> (param_count (K,), flops_per_example (K,))`` receives the engine's decoded
    hyperparameter columns (``{name: (K,) object array}``, inactive entries filled with the
    model's defaults) and returns the *active* network's trainable parameters and forward-pass
    floating-point operations (2 x multiply-adds) per example.
    """

    count: Callable[[Mapping[str, np.ndarray]], tuple[np.ndarray, np.ndarray]] | None = None

    def parameter_count(self, values, static, param_shapes):
        return np.asarray(self.count({**_broadcast(static, values), **values})[0], np.int64)

    def flops_per_example(self, values, static, forward_flops):
        return np.asarray(self.count({**_broadcast(static, values), **values})[1], float)


def _broadcast(static: Mapping[str, Any], values: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    k = len(next(iter(values.values()))) if values else 1
    return {n: np.array([v] * k, dtype=object) for n, v in static.items()}


def _col(values, name, default):
    if name not in values:
        return None if default is None else np.full(_k(values), float(default))
    return np.array([float(v) for v in values[name]])


def _k(values):
    return len(next(iter(values.values())))


def mlp_counts(n_in: int, n_out: int, max_depth: int) -> Callable:
    """``count`` for :class:`PerLayerMLP`: parameters ``sum (fan_in + 1) w`` (+ 2 w per layer
    with batch norm, its scale and offset), FLOPs ``2 sum fan_in w``, over the active layers
    and the output layer."""

    def count(values):
        depth = _col(values, "depth", 1)
        widths = np.stack([_col(values, f"width_{l + 1}", 1) for l in range(max_depth)], axis=1)
        bn = _col(values, "batch_norm", 0)
        active = np.arange(max_depth)[None, :] < depth[:, None]
        w = np.where(active, widths, 0.0)
        fan_in = np.concatenate([np.full((len(depth), 1), float(n_in)), w[:, :-1]], axis=1)
        last = widths[np.arange(len(depth)), depth.astype(int) - 1]
        params = np.sum((fan_in + 1) * w, axis=1) + 2 * bn * np.sum(w, axis=1) + (last + 1) * n_out
        flops = 2 * (np.sum(fan_in * w, axis=1) + last * n_out)
        return params, flops

    return count


def cnn_counts(image_shape: Sequence[int], n_out: int) -> Callable:
    """``count`` for :class:`ResidualCNN` with ``c`` channels and ``b`` blocks on H x W x C_in
    images: parameters ``(9 C_in + 1) c + b 2 (9 c^2 + c) (+ 2 c per batch norm) + (c + 1) n_out``,
    FLOPs ``2 H W (9 C_in c + 2 b 9 c^2) + 2 c n_out``."""
    h, w, c_in = image_shape

    def count(values):
        c = _col(values, "channels", 8)
        b = _col(values, "blocks", 1)
        bn = _col(values, "batch_norm", 0)
        params = (9 * c_in + 1) * c + b * 2 * (9 * c * c + c) + bn * 2 * c * (1 + 2 * b) + (c + 1) * n_out
        flops = 2 * h * w * (9 * c_in * c + 2 * b * 9 * c * c) + 2 * c * n_out
        return params, flops

    return count


# ----------------------------------------------------------------------------- model factories


def _index(hp, name, default=0):
    return hp[name] if name in hp else default


def per_layer_mlp(space: hs.Space, n_in: int, n_out: int, *, loss=None, metrics=None, directions=None,
                  output_activations=("linear",), name="per_layer_mlp") -> CountedModel:
    """A :class:`CountedModel` of :class:`PerLayerMLP` sized from ``space``.

    The space holds ``depth`` (Int) and ``width_1 .. width_D`` (Int, ``width_l`` conditional on
    ``depth >= l``), and may hold ``activation``, ``init``, ``output_activation`` (Categorical,
    traced as indices), ``batch_norm`` (Bool) and ``dropout`` (Float).
    """
    max_depth = int(space["depth"].high)
    max_width = max(int(space[f"width_{l + 1}"].high) for l in range(max_depth))
    activations = tuple(space["activation"].choices) if "activation" in space else ("relu",)
    use_bn = "batch_norm" in space
    use_dropout = "dropout" in space

    def module(hp):
        return PerLayerMLP(
            max_width=max_width, max_depth=max_depth, n_out=n_out, activations=activations,
            output_activations=tuple(output_activations), use_batch_norm=use_bn, use_dropout=use_dropout,
            depth=hp["depth"], widths=tuple(hp[f"width_{l + 1}"] for l in range(max_depth)),
            activation=_index(hp, "activation"), init_kind=_index(hp, "init"),
            output_activation=_index(hp, "output_activation"),
            batch_norm=hp["batch_norm"] if use_bn else False, dropout=hp["dropout"] if use_dropout else 0.0)

    traced = tuple(n for n in ("activation", "init", "output_activation", "loss") if n in space)
    defaults = {f"width_{l + 1}": 1 for l in range(max_depth)}
    return CountedModel(module, loss=loss, metrics=metrics, directions=directions or {}, traced=traced,
                        defaults=defaults, name=name, count=mlp_counts(n_in, n_out, max_depth))


def residual_cnn(space: hs.Space, image_shape: Sequence[int], n_out: int, name="residual_cnn") -> CountedModel:
    """A :class:`CountedModel` of :class:`ResidualCNN` sized from ``space`` (``channels`` and
    ``blocks`` Int; ``activation``, ``init`` Categorical; ``batch_norm`` Bool; ``dropout`` Float)."""
    max_channels = int(space["channels"].high)
    max_blocks = int(space["blocks"].high)
    activations = tuple(space["activation"].choices) if "activation" in space else ("relu",)
    use_bn = "batch_norm" in space
    use_dropout = "dropout" in space

    def module(hp):
        return ResidualCNN(
            max_channels=max_channels, max_blocks=max_blocks, n_out=n_out, activations=activations,
            use_batch_norm=use_bn, use_dropout=use_dropout, channels=hp["channels"], blocks=hp["blocks"],
            activation=_index(hp, "activation"), init_kind=_index(hp, "init"),
            batch_norm=hp["batch_norm"] if use_bn else False, dropout=hp["dropout"] if use_dropout else 0.0)

    traced = tuple(n for n in ("activation", "init") if n in space)
    return CountedModel(module, traced=traced, name=name, count=cnn_counts(tuple(image_shape), n_out))


# ----------------------------------------------------------------------------- losses and metrics

REGRESSION_LOSSES = ("mse", "mae")
"""Training losses of the regression studies (``loss`` hyperparameter, traced as an index)."""


def regression_loss(outputs, batch, hp):
    """Mean squared or mean absolute error, chosen by ``hp["loss"]`` (an index into
    :data:`REGRESSION_LOSSES`; mean squared error when the space has no ``loss``)."""
    y = batch["y"].reshape(outputs.shape)
    err = outputs - y
    mse = jnp.mean(err ** 2)
    if "loss" not in hp:
        return mse
    return jnp.where(hp["loss"] == 0, mse, jnp.mean(jnp.abs(err)))


def regression_metrics(outputs, batch, hp):
    """``mse``: the mean squared error, whatever loss trained the network (the study's error)."""
    pred = outputs["y"] if isinstance(outputs, dict) else outputs
    return {"mse": jnp.mean((pred - batch["y"].reshape(pred.shape)) ** 2)}


REGRESSION_DIRECTIONS = {"mse": "minimize"}


def bateman_rate_matrix(rates):
    """Lower-bidiagonal decay matrix A of ``dN/dt = A N``: ``A_ii = -l_i``, ``A_{i+1,i} = l_i``.
    ``rates`` (..., m) -> (..., m, m)."""
    m = rates.shape[-1]
    eye = jnp.eye(m, dtype=rates.dtype)
    sub = jnp.eye(m, k=-1, dtype=rates.dtype)
    return -rates[..., None, :] * eye + rates[..., None, :] * sub


class BatemanNet(nn.Module):
    """Wraps a network ``u(rates, t)`` and returns ``{"y": u, "dudt": du/dt}``; ``du/dt`` by a
    central difference of step ``2 h`` in the last input column (time), evaluated in the same
    batch (so batch norm sees one batch)."""

    net: nn.Module
    h: float = 1e-2

    @nn.compact
    def __call__(self, x, train: bool = False):
        shift = jnp.zeros(x.shape[-1], x.dtype).at[-1].set(self.h)
        n = x.shape[0]
        out = self.net(jnp.concatenate([x, x + shift, x - shift]), train=train)
        return {"y": out[:n], "dudt": (out[n:2 * n] - out[2 * n:]) / (2 * self.h)}


def bateman_pinn_loss(outputs, batch, hp):
    """Data misfit + ``physics_weight`` x ODE residual (Raissi et al. 2019's physics-informed loss).

    ``mean |u - y|^2 + w mean |du/dt - A(rates) u|^2`` with the rates the first m inputs
    (``batch["x"][:, :m]``); ``w = hp["physics_weight"]`` where ``hp["physics"]`` is on, else 0.
    """
    u, dudt = outputs["y"], outputs["dudt"]
    y = batch["y"].reshape(u.shape)
    m = u.shape[-1]
    rates = batch["x"][:, :m]
    residual = dudt - jnp.einsum("bij,bj->bi", bateman_rate_matrix(rates), u)
    data = jnp.mean((u - y) ** 2)
    physics = jnp.mean(residual ** 2)
    weight = jnp.where(hp.get("physics", True), hp.get("physics_weight", 0.0), 0.0)
    return data + weight * physics


def bateman_metrics(outputs, batch, hp):
    """``mse`` (data error) and ``residual`` (mean squared ODE residual) of a prediction."""
    u, dudt = outputs["y"], outputs["dudt"]
    m = u.shape[-1]
    residual = dudt - jnp.einsum("bij,bj->bi", bateman_rate_matrix(batch["x"][:, :m]), u)
    return {"mse": jnp.mean((u - batch["y"].reshape(u.shape)) ** 2), "residual": jnp.mean(residual ** 2)}


BATEMAN_DIRECTIONS = {"mse": "minimize", "residual": "minimize"}


def bateman_pinn(space: hs.Space, n_in: int, n_out: int, name="bateman_pinn") -> CountedModel:
    """The :class:`PerLayerMLP` of ``space`` inside :class:`BatemanNet`, trained with
    :func:`bateman_pinn_loss` (``physics_weight`` conditional on ``physics``)."""
    inner = per_layer_mlp(space, n_in, n_out, output_activations=("linear", "softplus"), name=name)

    def module(hp):
        return BatemanNet(inner.module(hp))

    return CountedModel(module, loss=bateman_pinn_loss, metrics=bateman_metrics, directions=BATEMAN_DIRECTIONS,
                        traced=inner.traced, defaults={**inner.defaults, "physics_weight": 0.0}, name=name,
                        count=inner.count, chance_loss=None)


def count_check(model: CountedModel, values: Mapping[str, Any], variables) -> tuple[int, int]:
    """(counted, built) parameters of one configuration, for tests: the counted active parameters
    and the nonzero-gradient parameters are compared there."""
    counted = int(model.count({k: np.array([v], dtype=object) for k, v in values.items()})[0][0])
    built = sum(math.prod(a.shape) for a in jax.tree.leaves(variables))
    return counted, built
