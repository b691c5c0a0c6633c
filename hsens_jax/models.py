"""Flax models whose architecture is a per-configuration hyperparameter.

Two families, an MLP and a small CNN, are each built once at their *largest* size in a
sweep (``max_width`` units or channels, ``max_depth`` hidden layers or conv blocks) and
shrunk per configuration inside the same compiled program:

=====================  ==========================================================
hyperparameter         how one program handles every value
=====================  ==========================================================
``width``              masking: units (channels) ``j >= width`` are multiplied by 0
                       after their activation, so they carry no signal and receive
                       no gradient.
``depth``              masking: hidden layer ``l >= depth`` is replaced by the
                       identity (``jnp.where``), its parameters get zero gradient.
``activation``         every activation in the sweep is computed and the chosen one
                       selected (elementwise, cheap).
``dropout``            a traced rate: the keep mask is ``u >= rate``.
``batch_norm``         both paths are computed and one selected.
``init_scale``         a traced multiplier of the initial weights.
=====================  ==========================================================

Masking is exact, not approximate: the initial weights are drawn element by element
by a counter-based hash of the element's (input unit, output unit) indices, and dropout
noise from (example, unit) indices, so the active part of a ``max_width`` network holds exactly the
numbers a network built at ``width`` would hold, and the masked units contribute exact
zeros. (Floating-point sums over the extra zeros may be reassociated by XLA; the
tests bound the difference at 1e-6 relative in float32.)

What masking cannot do is change array shapes: the input shape, the number of
outputs and the batch size are static. The sweep engine compiles one program per
batch size and training length (see :mod:`hsens_jax.sweep`).

Per-layer sizes: by default every hidden layer is built ``max_width`` wide. When all
configurations of a program have the same depth, ``ModelSpec.layer_widths`` builds
layer ``l`` at its own largest width instead (a sweep over ``hidden_layer_sizes``
such as ``(100, 50)`` then multiplies 100x50 matrices, not 100x100 ones). Depth
masking needs equal widths on both sides of a skipped layer, so a program with
unequal ``layer_widths`` runs every configuration at full depth (checked by
:func:`hsens_jax.train.hp_from_values`).

Initialization: weights are ``init_scale * N(0, 1) / sqrt(fan_in)`` (LeCun normal for
``init_scale = 1``; He normal for ``sqrt(2)``), where ``fan_in`` counts only *active*
inputs; biases start at zero.

CNN: ``depth`` blocks of 3x3 'SAME' convolutions with ``width`` channels (block 0 maps
the image channels to ``width``), each followed by optional batch norm, the activation
and dropout, then global average pooling and a dense output layer. There is no
pooling between blocks, so that a skipped block is an exact identity. The convolutions
are computed as shifted matrix products (:func:`conv_same`), which vectorize over
configurations much better than XLA's grouped convolutions on a CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

ACTIVATIONS = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "gelu": jax.nn.gelu,
    "sigmoid": jax.nn.sigmoid,
    "elu": jax.nn.elu,
    "silu": jax.nn.silu,
    "leaky_relu": jax.nn.leaky_relu,
}
"""Activations a configuration may choose, by name."""

MODEL_HYPERPARAMETERS = ("widths", "depth", "activation", "dropout", "batch_norm", "init_scale")


def _mix32(x):
    """The murmur3 32-bit finalizer: a bijective, well-avalanching mix of uint32 words."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x85EBCA6B)
    x = x ^ (x >> 13)
    x = x * jnp.uint32(0xC2B2AE35)
    return x ^ (x >> 16)


def counter_uniform(key: jax.Array, *counters: jax.Array) -> jax.Array:
    """Uniform draws in (0, 1) that depend only on ``key`` and the integer counters.

    Counter-based: the value at an index is a hash of the key's bits and the counters'
    values at that index (counters broadcast together), not of the array's shape. Two
    arrays of different sizes therefore agree wherever their counters agree, which a
    shape-based ``jax.random`` draw does not. One ``jax.random.bits`` call seeds the
    hash; the rest is a few integer operations (cheap to compile and to run).
    """
    seed = jax.random.bits(key, (2,), jnp.uint32)
    h = _mix32(seed[0] ^ jnp.uint32(0x9E3779B9))
    for c in counters:
        h = _mix32(h ^ _mix32(jnp.asarray(c).astype(jnp.uint32) * jnp.uint32(0x7FEB352D) + seed[1]))
    return ((h >> 8).astype(jnp.float32) + 0.5) / float(1 << 24)


def elementwise_normal(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
    """Standard normal draws whose value at index (r, i, j) depends only on (key, r, i, j).

    The last two axes are (fan-in unit, fan-out unit), leading axes (a conv kernel's
    spatial extent) are flattened into ``r``. The draws of a smaller array equal the
    corresponding block of a larger one, which makes width masking exact.
    """
    *rest, n_in, n_out = shape
    n_rest = math.prod(rest)
    r = jnp.arange(n_rest).reshape(-1, 1, 1)
    i = jnp.arange(n_in).reshape(1, -1, 1)
    j = jnp.arange(n_out).reshape(1, 1, -1)
    u = counter_uniform(key, r, i, j)
    return jax.scipy.special.ndtri(u).astype(dtype).reshape(*rest, n_in, n_out)


def _unit_uniform(key: jax.Array, batch_shape: Sequence[int], n_units: int) -> jax.Array:
    """Uniform noise of shape (*batch_shape, n_units); its value depends on (key, position, unit)."""
    n = math.prod(batch_shape)
    u = counter_uniform(key, jnp.arange(n).reshape(-1, 1), jnp.arange(n_units).reshape(1, -1))
    return u.reshape(*batch_shape, n_units)


def conv_same(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Stride-1 'SAME' convolution of NHWC images with an HWIO kernel of odd size.

    Computed as a sum of shifted matrix products (one per kernel position: the zero-padded
    images shifted by that offset times the kernel's (C_in, C_out) slice at it), which equals
    ``jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME")`` up to the order of the float
    sums. The reason is vectorization: under ``vmap`` over configurations, each with its own
    kernel, a convolution becomes a grouped convolution, which XLA:CPU runs, and
    differentiates, far more slowly than the same number of batched matrix products (the
    form dense layers take). Measured on a 2-core CPU (8 configurations, 64 images of 28x28,
    8 -> 8 channels, jitted gradient of a loss of the outputs): 102 ms against 2.67 s.

    Args:
      x: images, shape (batch, H, W, C_in).
      kernel: shape (kh, kw, C_in, C_out), kh and kw odd.
    Returns:
      shape (batch, H, W, C_out).
    """
    kh, kw = kernel.shape[0], kernel.shape[1]
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"conv_same needs an odd kernel size, got {kh}x{kw}")
    h, w = x.shape[1], x.shape[2]
    xp = jnp.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    out = None
    for i in range(kh):
        for j in range(kw):
            term = xp[:, i:i + h, j:j + w, :] @ kernel[i, j]
            out = term if out is None else out + term
    return out


def _select_activation(z, names: tuple[str, ...], choice):
    if len(names) == 1:
        return ACTIVATIONS[names[0]](z)
    outs = [ACTIVATIONS[n](z) for n in names]
    return jnp.select([choice == i for i in range(len(names))], outs)


class _MaskedLayer(nn.Module):
    """Linear map (dense or 3x3 conv) -> optional batch norm -> activation -> mask -> dropout."""

    features: int
    conv: bool
    activations: tuple[str, ...]
    dropout: bool = True
    batch_norm: bool = True

    @nn.compact
    def __call__(self, h, hp, in_width, width, train: bool):
        n_in = h.shape[-1]
        ksize = (3, 3) if self.conv else ()
        fan_in = jnp.asarray(in_width, h.dtype) * (9 if self.conv else 1)

        def kernel_init(key, shape, dtype=h.dtype):
            return elementwise_normal(key, shape, dtype) * hp["init_scale"] / jnp.sqrt(fan_in)

        kernel = self.param("kernel", kernel_init, (*ksize, n_in, self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,), h.dtype)
        if self.conv:
            z = conv_same(h, kernel)
        else:
            z = h @ kernel
        z = z + bias
        if self.batch_norm:
            bn = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                              dtype=z.dtype, param_dtype=z.dtype, name="bn")(z)
            z = jnp.where(hp["batch_norm"] > 0.5, bn, z)
        a = _select_activation(z, self.activations, hp["activation"])
        mask = (jnp.arange(self.features) < width).astype(a.dtype)
        a = a * mask
        if train and self.dropout:
            u = _unit_uniform(self.make_rng("dropout"), a.shape[:-1], self.features)
            rate = hp["dropout"]
            a = jnp.where(u >= rate, a / (1.0 - rate), 0.0)
        return a


def _masked_stack(net, h, hp, conv: bool, prefix: str, train: bool):
    """The hidden layers of ``net`` (an MLP or CNN, inside its compact call): layer ``l``
    has ``hp["widths"][l]`` active units and is the identity where ``l >= hp["depth"]``
    (where the layer keeps the array's width; see ``ModelSpec.layer_widths``)."""
    in_width = h.shape[-1]
    sizes = net.layer_widths or (net.max_width,) * net.max_depth
    for layer in range(net.max_depth):
        width = hp["widths"][layer]
        out = _MaskedLayer(sizes[layer], conv, net.activations, net.dropout, net.batch_norm,
                           name=f"{prefix}_{layer}")(h, hp, in_width, width, train)
        h = out if layer == 0 or out.shape != h.shape else jnp.where(layer < hp["depth"], out, h)
        in_width = width
    return h


class _MaskedNet(nn.Module):
    """Fields shared by the MLP and the CNN: their largest size and which features exist."""

    max_width: int
    max_depth: int
    n_out: int
    activations: tuple[str, ...] = ("relu",)
    dropout: bool = True
    batch_norm: bool = True
    layer_widths: tuple[int, ...] = ()


class MLP(_MaskedNet):
    """Multi-layer perceptron of up to ``max_depth`` hidden layers of ``max_width`` units.

    Input: (batch, *input_shape), flattened. Output: (batch, n_out) logits or values.
    ``hp`` is a dict with keys :data:`MODEL_HYPERPARAMETERS`: scalars, except ``widths``,
    the units of each hidden layer, shape (max_depth,); ``activation`` indexes
    ``activations``.
    """

    @nn.compact
    def __call__(self, x, hp, train: bool = False):
        h = _masked_stack(self, x.reshape(x.shape[0], -1), hp, False, "hidden", train)
        return _Output(self.n_out, name="output")(h, hp, _last_width(hp))


class CNN(_MaskedNet):
    """Small CNN: up to ``max_depth`` 3x3 conv blocks of ``max_width`` channels.

    Input: (batch, H, W, C) images. Output: (batch, n_out). See the module docstring.
    """

    @nn.compact
    def __call__(self, x, hp, train: bool = False):
        if x.ndim != 4:
            raise ValueError(f"CNN expects images (batch, H, W, C); got shape {x.shape}")
        h = _masked_stack(self, x, hp, True, "conv", train).mean(axis=(1, 2))
        return _Output(self.n_out, name="output")(h, hp, _last_width(hp))


def _last_width(hp):
    depth = jnp.clip(jnp.asarray(hp["depth"]).astype(jnp.int32), 1, hp["widths"].shape[-1])
    return hp["widths"][depth - 1]


class _Output(nn.Module):
    """Dense output layer reading only the active units of the last hidden layer."""

    n_out: int

    @nn.compact
    def __call__(self, h, hp, in_width):
        fan_in = jnp.asarray(in_width, h.dtype)

        def kernel_init(key, shape, dtype=h.dtype):
            return elementwise_normal(key, shape, dtype) * hp["init_scale"] / jnp.sqrt(fan_in)

        kernel = self.param("kernel", kernel_init, (h.shape[-1], self.n_out))
        bias = self.param("bias", nn.initializers.zeros, (self.n_out,), h.dtype)
        return h @ kernel + bias


@dataclass(frozen=True)
class ModelSpec:
    """Static description of the model family of a sweep (hashable, so usable as a jit static).

    Attributes:
      kind: ``"mlp"`` or ``"cnn"``.
      max_width: units per hidden layer (channels per block) of the largest configuration.
      max_depth: hidden layers (conv blocks) of the deepest configuration, >= 1.
      n_out: outputs (classes, or regression targets).
      input_shape: shape of one example, e.g. (8, 8, 1).
      activations: the activation names configurations choose from.
      dropout: whether any configuration uses dropout (False compiles it out).
      batch_norm: whether any configuration uses batch norm (False compiles it out).
      layer_widths: optional built size of each hidden layer, ``max_depth`` entries with
        maximum ``max_width``; empty (the default) builds every layer ``max_width`` wide.
        Unequal sizes require every configuration to use the full depth.
    """

    kind: str
    max_width: int
    max_depth: int
    n_out: int
    input_shape: tuple[int, ...]
    activations: tuple[str, ...] = ("relu",)
    dropout: bool = False
    batch_norm: bool = False
    layer_widths: tuple[int, ...] = ()

    def __post_init__(self):
        if self.kind not in ("mlp", "cnn"):
            raise ValueError(f"model kind must be 'mlp' or 'cnn', got {self.kind!r}")
        if self.max_width < 1 or self.max_depth < 1:
            raise ValueError(f"model max_width and max_depth must be >= 1, got {self.max_width}, {self.max_depth}")
        for a in self.activations:
            if a not in ACTIVATIONS:
                raise ValueError(f"unknown activation {a!r}; choose from {tuple(ACTIVATIONS)}")
        if self.layer_widths:
            lw = tuple(int(w) for w in self.layer_widths)
            if len(lw) != self.max_depth or min(lw) < 1 or max(lw) != self.max_width:
                raise ValueError(
                    f"layer_widths={self.layer_widths} must give {self.max_depth} positive sizes "
                    f"(one per hidden layer) whose largest is max_width={self.max_width}"
                )
            object.__setattr__(self, "layer_widths", lw)
        if self.kind == "cnn" and len(self.input_shape) != 3:
            raise ValueError(f"the CNN needs image inputs (H, W, C); got input shape {self.input_shape}")

    def module(self) -> nn.Module:
        cls = MLP if self.kind == "mlp" else CNN
        return cls(self.max_width, self.max_depth, self.n_out, self.activations, self.dropout, self.batch_norm,
                   self.layer_widths)

    @property
    def full_depth_only(self) -> bool:
        """Whether unequal ``layer_widths`` forbid configurations shallower than ``max_depth``."""
        return len(set(self.layer_widths)) > 1

    def parameter_count(self, widths, depth, batch_norm):
        """Trainable parameters of the active network.

        ``widths``: (..., max_depth) units per hidden layer; ``depth``, ``batch_norm``: (...).
        """
        widths, depth = np.asarray(widths, float), np.asarray(depth, float)
        active = np.arange(widths.shape[-1]) < depth[..., None]
        w = np.where(active, widths, 0.0)
        n_in = math.prod(self.input_shape) if self.kind == "mlp" else self.input_shape[-1]
        k = 1 if self.kind == "mlp" else 9
        fan_in = np.concatenate([np.full(w.shape[:-1] + (1,), float(n_in)), w[..., :-1]], axis=-1)
        hidden = np.sum(k * fan_in * w + w, axis=-1)
        last = np.take_along_axis(widths, (np.clip(depth, 1, None) - 1).astype(int)[..., None], -1)[..., 0]
        bn = 2 * np.sum(w, axis=-1) * np.asarray(batch_norm, float)
        return hidden + bn + last * self.n_out + self.n_out

    def flops_per_example(self, widths, depth):
        """Multiply-adds x 2 of one forward pass of the active network (arrays broadcast)."""
        widths, depth = np.asarray(widths, float), np.asarray(depth, float)
        active = np.arange(widths.shape[-1]) < depth[..., None]
        w = np.where(active, widths, 0.0)
        n_in = math.prod(self.input_shape) if self.kind == "mlp" else self.input_shape[-1]
        fan_in = np.concatenate([np.full(w.shape[:-1] + (1,), float(n_in)), w[..., :-1]], axis=-1)
        last = np.take_along_axis(widths, (np.clip(depth, 1, None) - 1).astype(int)[..., None], -1)[..., 0]
        if self.kind == "mlp":
            return 2 * (np.sum(fan_in * w, axis=-1) + last * self.n_out)
        h, wd, _ = self.input_shape
        return 2 * (h * wd * 9 * np.sum(fan_in * w, axis=-1) + last * self.n_out)
