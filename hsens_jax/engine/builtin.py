"""The built-in models: an MLP and a small CNN whose architecture varies inside one program.

Both are instances of the engine's model interface (:class:`hsens_jax.engine.Model`), with
one optimization of their own: width and depth are *traced*, not static. Each is built once
at its *largest* size in a program (``max_width`` units or channels, ``max_depth`` hidden
layers or conv blocks) and shrunk per configuration inside the same compiled program:

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
batch size and training length (see :mod:`hsens_jax.engine.sweep`).

Programs are sized from the space, not from the configurations of a call
(:meth:`MaskedNet.plan`): ``max_width`` is the space's largest width (or largest
``hidden_layer_sizes`` layer), ``max_depth`` its deepest, ``activations`` every choice the
space offers, dropout and batch norm compiled in when the space can turn them on. Successive
batches of a search, a grown design or a resumed run therefore reuse one program; the price
is the compute of the space's largest network for every run (``group_by=("width",)``
compiles exact sizes instead).

Per-layer sizes: by default every hidden layer is built ``max_width`` wide. When every
configuration a program can hold has the same depth, ``layer_widths`` builds layer ``l`` at
its own largest width instead (a sweep over ``hidden_layer_sizes`` such as ``(100, 50)``
then multiplies 100x50 matrices, not 100x100 ones). Depth masking needs equal widths on
both sides of a skipped layer, so a program with unequal ``layer_widths`` runs every
configuration at full depth.

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
from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from hsens_jax.engine.counters import counter_uniform, elementwise_normal
from hsens_jax.engine.model import Model
from hsens_jax.space import Float, Int

ACTIVATIONS = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "gelu": jax.nn.gelu,
    "sigmoid": jax.nn.sigmoid,
    "elu": jax.nn.elu,
    "silu": jax.nn.silu,
    "leaky_relu": jax.nn.leaky_relu,
    # scikit-learn's MLP offers a linear network (activation="identity"): the search front end maps it here
    "identity": lambda z: z,
}
"""Activations a configuration may choose, by name."""

MODEL_HYPERPARAMETERS = ("widths", "depth", "activation", "dropout", "batch_norm", "init_scale")
"""The traced inputs of the masked modules (what :meth:`MaskedNet.encode` produces)."""

HYPERPARAMETERS = {
    "width": 64,
    "depth": 2,
    "hidden_layer_sizes": None,
    "activation": "relu",
    "dropout": 0.0,
    "batch_norm": False,
    "init_scale": 1.0,
}
"""The built-in models' hyperparameters and defaults. ``width`` and ``depth`` give ``depth``
hidden layers of ``width`` units; ``hidden_layer_sizes`` (``"100,50"`` or a tuple, as in
scikit-learn's ``MLPClassifier``) gives per-layer widths instead."""


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
    (where the layer keeps the array's width; see ``MaskedNet.layer_widths``)."""
    in_width = h.shape[-1]
    sizes = net.layer_widths or (net.max_width,) * net.max_depth
    for layer in range(net.max_depth):
        width = hp["widths"][layer]
        out = _MaskedLayer(sizes[layer], conv, net.activations, net.dropout, net.batch_norm,
                           name=f"{prefix}_{layer}")(h, hp, in_width, width, train)
        h = out if layer == 0 or out.shape != h.shape else jnp.where(layer < hp["depth"], out, h)
        in_width = width
    return h


class _MaskedModule(nn.Module):
    """Fields shared by the MLP and the CNN: their largest size and which features exist."""

    max_width: int
    max_depth: int
    n_out: int
    activations: tuple[str, ...] = ("relu",)
    dropout: bool = True
    batch_norm: bool = True
    layer_widths: tuple[int, ...] = ()


class MaskedMLP(_MaskedModule):
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


class MaskedCNN(_MaskedModule):
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




def parse_layer_sizes(value) -> tuple[int, ...]:
    """``"100,50"`` / ``"100-50"`` / ``(100, 50)`` / ``100`` -> ``(100, 50)``."""
    if isinstance(value, (int, np.integer)):
        return (int(value),)
    if isinstance(value, str):
        parts = [p for p in value.replace("-", ",").replace("x", ",").replace(" ", "").strip("()").split(",") if p]
        try:
            sizes = tuple(int(p) for p in parts)
        except ValueError:
            raise ValueError(f"hidden_layer_sizes {value!r} is not a list of integers such as '100,50'") from None
    else:
        sizes = tuple(int(v) for v in value)
    if not sizes or min(sizes) < 1:
        raise ValueError(f"hidden_layer_sizes {value!r} must list at least one positive width")
    return sizes


def _positive_int(name, v):
    v = float(v)
    if not math.isfinite(v) or v < 1 or v != round(v):
        raise ValueError(f"hyperparameter {name!r} must be a positive integer, got {v:g}")
    return int(v)


@dataclass(frozen=True)
class MaskedNet(Model):
    """The built-in MLP (``kind="mlp"``) or CNN (``kind="cnn"``) as an engine model.

    ``hsens_jax.MLP()`` and ``hsens_jax.CNN()`` are the unsized models a sweep takes
    (``run_sweep(..., model=hs.MLP())``, or ``model="mlp"``); :meth:`plan` sizes one per
    program from the space and the data set (the fields below). Hyperparameters:
    :data:`HYPERPARAMETERS`, all traced (one program serves every width, depth, activation,
    dropout rate, batch-norm switch and init scale of the space), trained by the engine's
    optimizer with the task's built-in loss.

    Attributes (set by :meth:`plan`):
      kind: ``"mlp"`` or ``"cnn"``.
      n_out: outputs (classes, or regression targets).
      input_shape: shape of one example, e.g. (8, 8, 1).
      max_width: units per hidden layer (channels per block) of the largest configuration.
      max_depth: hidden layers (conv blocks) of the deepest configuration.
      layer_widths: built size of each hidden layer (``max_depth`` entries), or empty: every
        layer ``max_width`` wide.
      activations: the activation names configurations choose from.
      use_dropout, use_batch_norm: whether any configuration can use them (False compiles
        them out).
    """

    module: Any = None
    kind: str = "mlp"
    n_out: int = 0
    input_shape: tuple[int, ...] = ()
    max_width: int = 0
    max_depth: int = 0
    layer_widths: tuple[int, ...] = ()
    activations: tuple[str, ...] = ("relu",)
    use_dropout: bool = False
    use_batch_norm: bool = False

    def __post_init__(self):
        if self.kind not in ("mlp", "cnn"):
            raise ValueError(f"model kind must be 'mlp' or 'cnn', got {self.kind!r}")
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
        if self.kind == "cnn" and self.input_shape and len(self.input_shape) != 3:
            raise ValueError(f"the CNN needs image inputs (H, W, C); got input shape {self.input_shape}")
        object.__setattr__(self, "input_shape", tuple(self.input_shape))
        object.__setattr__(self, "module", _build_masked)
        if self.name is None:
            object.__setattr__(self, "name", self.kind)
        super().__post_init__()

    @property
    def sized(self) -> bool:
        return self.max_width > 0

    @property
    def full_depth_only(self) -> bool:
        """Whether unequal ``layer_widths`` forbid configurations shallower than ``max_depth``."""
        return len(set(self.layer_widths)) > 1

    def known_hyperparameters(self):
        return dict(HYPERPARAMETERS)

    def program_defaults(self):
        """A sized model's configurations default to its full size: ``max_width`` x ``max_depth``."""
        if not self.sized:
            return {}
        out = {"width": self.max_width, "depth": self.max_depth}
        if HYPERPARAMETERS["activation"] not in self.activations:
            out["activation"] = self.activations[0]
        return out

    def validate(self, values: Mapping[str, np.ndarray], explicit, space) -> None:
        both = [n for n in ("width", "depth") if n in explicit and "hidden_layer_sizes" in explicit]
        if both:
            raise ValueError(f"hyperparameter(s) {both} and 'hidden_layer_sizes' both give the architecture: "
                             f"use one or the other")
        for name in ("width", "depth"):
            for v in _span(name, values, space, ()):
                _positive_int(name, v)
        for v in _span("dropout", values, space, ()):
            if not 0 <= float(v) < 1:
                raise ValueError(f"hyperparameter 'dropout': {float(v):g} is outside its valid range [0, 1)")
        for v in _span("init_scale", values, space, ()):
            if not float(v) >= 0:
                raise ValueError(f"hyperparameter 'init_scale': {float(v):g} must be >= 0")
        for v in _span("activation", values, space, ()):
            if v not in ACTIVATIONS:
                raise ValueError(f"activation value(s) {[v]} unknown; choose from {tuple(ACTIVATIONS)}")

    def group_key(self, name, values, explicit):
        """``"depth"`` with ``hidden_layer_sizes`` set: each configuration's number of hidden
        layers (one program per depth, its widths masked within it)."""
        if name == "depth" and "hidden_layer_sizes" in explicit and "depth" not in explicit:
            return np.array([len(parse_layer_sizes(v)) if v is not None else 0
                             for v in values["hidden_layer_sizes"]])
        return None

    def plan(self, values, space, grouped, dataset) -> "MaskedNet":
        """This model sized for one program: from the space's bounds and choices, except for the
        names in ``grouped`` (program-splitting), which take the group's own values. With
        ``"depth"`` grouped (and ``hidden_layer_sizes`` set), the space's architectures of the
        group's depth."""
        span = lambda name: _span(name, values, space, grouped)  # noqa: E731
        if values.get("hidden_layer_sizes") is not None and values["hidden_layer_sizes"][0] is not None:
            sizes = [parse_layer_sizes(v) for v in span("hidden_layer_sizes")]
            if "depth" in grouped and "hidden_layer_sizes" not in grouped:
                own = {len(parse_layer_sizes(v)) for v in values["hidden_layer_sizes"] if v is not None}
                sizes = [s for s in sizes if len(s) in own]
            depths = {len(s) for s in sizes}
            max_depth = max(depths)
            max_width = max(max(s) for s in sizes)
            layer_widths = (tuple(max(s[i] for s in sizes) for i in range(max_depth)) if len(depths) == 1 else ())
        else:
            max_width = max(_positive_int("width", v) for v in span("width"))
            max_depth = max(_positive_int("depth", v) for v in span("depth"))
            layer_widths = ()
        used = set(span("activation"))
        return replace(
            self, n_out=int(dataset.output_dim), input_shape=tuple(dataset.input_shape),
            max_width=int(max_width), max_depth=int(max_depth), layer_widths=layer_widths,
            activations=tuple(a for a in ACTIVATIONS if a in used),
            use_dropout=any(float(v) > 0 for v in span("dropout")),
            use_batch_norm=any(bool(v) for v in span("batch_norm")),
        )

    def encode(self, values, static, dtype) -> dict[str, np.ndarray]:
        """The masked modules' inputs (:data:`MODEL_HYPERPARAMETERS` plus ``width``) per configuration."""
        k = len(next(iter(values.values())))
        get = lambda n: values[n] if n in values else np.array([HYPERPARAMETERS[n]] * k, dtype=object)  # noqa: E731
        sizes = get("hidden_layer_sizes")
        if sizes[0] is not None:
            parsed = [parse_layer_sizes(v) for v in sizes]
            if max(len(s) for s in parsed) > self.max_depth:
                raise ValueError(f"hidden_layer_sizes has more layers than the program's max_depth={self.max_depth}")
            widths = np.array([list(s) + [0] * (self.max_depth - len(s)) for s in parsed], float)
            depth = np.array([len(s) for s in parsed], float)
        else:
            width = np.array([_positive_int("width", v) for v in get("width")], float)
            depth = np.array([_positive_int("depth", v) for v in get("depth")], float)
            widths = np.repeat(width[:, None], self.max_depth, 1)
        self._check_fits(widths, depth)
        acts = list(self.activations)
        for a in get("activation"):
            if a not in acts:
                raise ValueError(f"activation={a!r} is not among this program's choices {tuple(acts)}")
        return {
            "widths": widths.astype(dtype), "width": widths[:, 0].astype(dtype), "depth": depth.astype(dtype),
            "activation": np.array([acts.index(a) for a in get("activation")], np.int32),
            "dropout": np.asarray(get("dropout"), float).astype(dtype),
            "batch_norm": np.asarray(get("batch_norm"), float).astype(dtype),
            "init_scale": np.asarray(get("init_scale"), float).astype(dtype),
        }

    def _check_fits(self, widths, depth):
        limit = np.asarray(self.layer_widths or (self.max_width,) * self.max_depth, float)
        if widths.shape[1] > len(limit) or np.any(depth > self.max_depth):
            raise ValueError(f"depth {depth.max():g} exceeds this program's max_depth={self.max_depth}")
        active = np.arange(widths.shape[1]) < depth[:, None]
        too_wide = active & (widths > limit[: widths.shape[1]])
        if np.any(too_wide):
            layer = int(np.nonzero(too_wide)[1][0])
            raise ValueError(f"hidden layer {layer} asks for {widths[too_wide][0]:g} units but this program builds it "
                             f"with {int(limit[layer])}")
        if self.full_depth_only and np.any(depth != self.max_depth):
            raise ValueError(f"depth {depth[depth != self.max_depth][0]:g}: a program with unequal "
                             f"layer_widths={self.layer_widths} trains only networks of depth {self.max_depth}")

    def module_instance(self) -> nn.Module:
        cls = MaskedMLP if self.kind == "mlp" else MaskedCNN
        return cls(self.max_width, self.max_depth, self.n_out, self.activations, self.use_dropout,
                   self.use_batch_norm, self.layer_widths)

    def build(self, hp) -> nn.Module:
        return self.module_instance()

    def init(self, hp, key, x, rng=None) -> dict:
        return self.module_instance().init({"params": key}, x, hp, train=False)

    def apply(self, variables, x, hp, *, train: bool, rng=None):
        module = self.module_instance()
        state = {k: v for k, v in variables.items() if k != "params"}
        if train:
            rngs = {"dropout": rng} if rng is not None else {}
            out, updates = module.apply(variables, x, hp, train=True, rngs=rngs, mutable=list(state))
            return out, {**state, **updates}
        return module.apply(variables, x, hp, train=False), state

    def parameter_count(self, values, static, param_shapes=None) -> np.ndarray:
        """Trainable parameters of each configuration's active network (K,)."""
        enc = self.encode(values, static, np.float64)
        return self.count_parameters(enc["widths"], enc["depth"], enc["batch_norm"])

    def flops_per_example(self, values, static, forward_flops=None) -> np.ndarray:
        """Multiply-adds x 2 of one forward pass of each configuration's active network (K,)."""
        enc = self.encode(values, static, np.float64)
        return self.count_flops(enc["widths"], enc["depth"])

    def count_parameters(self, widths, depth, batch_norm) -> np.ndarray:
        """Trainable parameters of the active network: ``widths`` (..., max_depth) units per
        hidden layer, ``depth`` and ``batch_norm`` (...) (arrays broadcast)."""
        widths, depth = np.asarray(widths, float), np.asarray(depth, float)
        bn = batch_norm
        active = np.arange(widths.shape[-1]) < depth[..., None]
        w = np.where(active, widths, 0.0)
        n_in = math.prod(self.input_shape) if self.kind == "mlp" else self.input_shape[-1]
        k = 1 if self.kind == "mlp" else 9
        fan_in = np.concatenate([np.full(w.shape[:-1] + (1,), float(n_in)), w[..., :-1]], axis=-1)
        hidden = np.sum(k * fan_in * w + w, axis=-1)
        last = np.take_along_axis(widths, (np.clip(depth, 1, None) - 1).astype(int)[..., None], -1)[..., 0]
        bnp = 2 * np.sum(w, axis=-1) * np.asarray(bn, float)
        return np.asarray(hidden + bnp + last * self.n_out + self.n_out).astype(np.int64)

    def count_flops(self, widths, depth) -> np.ndarray:
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


def _build_masked(hp):  # MaskedNet overrides build(); this only marks the field as set
    raise NotImplementedError


def _span(name, values, space, grouped) -> list:
    """Every value ``name`` may take in a program: the space's range (bounds, or all choices)
    unless ``name`` is grouped or not in the space, then the configurations' own values."""
    if space is not None and name in space.names and name not in grouped:
        p = space[name]
        if isinstance(p, (Int, Float)):
            return [p.low, p.high]
        vals = list(p.choices)
        if name in values:  # inactive rows carry the fixed value or default
            vals += [v for v in values[name] if v is not None]
        return vals
    if name in values:
        return [v for v in values[name] if v is not None]
    return [HYPERPARAMETERS[name]]


def MLP(**kwargs) -> MaskedNet:
    """The built-in multi-layer perceptron (unsized: each sweep program sizes it; see :class:`MaskedNet`)."""
    return MaskedNet(kind="mlp", **kwargs)


def CNN(**kwargs) -> MaskedNet:
    """The built-in CNN of 3x3 conv blocks (unsized: each sweep program sizes it; see :class:`MaskedNet`)."""
    return MaskedNet(kind="cnn", **kwargs)


BUILTIN_MODELS = {"mlp": MLP, "cnn": CNN}


def sized_model(kind: str, max_width: int, max_depth: int, n_out: int, input_shape, activations=("relu",),
                dropout: bool = False, batch_norm: bool = False, layer_widths=()) -> MaskedNet:
    """A built-in model sized by hand (what :meth:`MaskedNet.plan` does for a sweep program)."""
    if int(max_width) < 1 or int(max_depth) < 1:
        raise ValueError(f"model max_width and max_depth must be >= 1, got {max_width}, {max_depth}")
    return MaskedNet(kind=kind, max_width=int(max_width), max_depth=int(max_depth), n_out=int(n_out),
                     input_shape=tuple(input_shape), activations=tuple(activations), use_dropout=bool(dropout),
                     use_batch_norm=bool(batch_norm), layer_widths=tuple(layer_widths))
