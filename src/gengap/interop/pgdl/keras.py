"""Keras Sequential models (a PGDL ``config.json`` plus Keras HDF5 weights) as torch modules.

The torch module takes gengap's layout, images (N, C, H, W) and vectors (N, D), and gives the
Keras model's outputs (logits for PGDL's models). Keras works channels-last, so:

* conv kernels go from HWIO to OIHW and dense kernels from (in, out) to (out, in);
* ``Flatten`` of an image flattens in (H, W, C) order, as Keras does, so the dense layer after
  it sees its inputs in the order it was trained on;
* ``padding='same'`` pads as TensorFlow does: ``out = ceil(in / stride)``, and when the total
  padding is odd the extra row and column go at the bottom and right (stride 2 with an even
  input, for example). Pooling with 'same' ignores the padded cells.

Layers: Conv2D, Dense, MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D,
GlobalMaxPooling2D, Flatten, Dropout, BatchNormalization, Activation, ReLU, LeakyReLU. Anything
else, or an argument that changes what a layer computes and is not handled, is a one-line
:class:`GengapError` naming it.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gengap.errors import GengapError

# Arguments that do not change what a trained layer computes (initializers, regularizers,
# constraints, bookkeeping): accepted and ignored.
_INERT = {
    "name", "trainable", "dtype", "input_shape", "batch_input_shape", "batch_size",
    "input_dim", "dynamic", "autocast", "weights",
    "kernel_initializer", "bias_initializer", "kernel_regularizer", "bias_regularizer",
    "activity_regularizer", "kernel_constraint", "bias_constraint",
    "beta_initializer", "gamma_initializer", "moving_mean_initializer",
    "moving_variance_initializer", "beta_regularizer", "gamma_regularizer",
    "beta_constraint", "gamma_constraint", "momentum", "fused", "renorm_momentum",
    "renorm_clipping", "noise_shape", "seed",
}

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "softplus": nn.Softplus,
    "softsign": nn.Softsign,
    "swish": nn.SiLU,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "softmax": lambda: nn.Softmax(dim=1),  # Keras: the last (channel) axis = torch's dim 1
}


class KerasFlatten(nn.Module):
    """Keras's ``Flatten`` of channels-last images: (N, C, H, W) flattened in (H, W, C) order."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            x = x.permute(0, 2, 3, 1)
        return x.flatten(1)


class GlobalPool(nn.Module):
    """``GlobalAveragePooling2D`` / ``GlobalMaxPooling2D``: (N, C, H, W) -> (N, C)."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)) if self.mode == "avg" else x.amax(dim=(2, 3))

    def extra_repr(self) -> str:
        return self.mode


class SamePool2d(nn.Module):
    """Max or average pooling with TensorFlow's 'same' padding (possibly asymmetric); padded
    cells never win a max and are not counted in an average."""

    def __init__(self, mode: str, kernel: tuple[int, int], stride: tuple[int, int],
                 pad: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.mode, self.kernel, self.stride, self.pad = mode, kernel, stride, pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "max":
            padded = F.pad(x, self.pad, value=float("-inf"))
            return F.max_pool2d(padded, self.kernel, self.stride)
        total = F.avg_pool2d(F.pad(x, self.pad), self.kernel, self.stride)
        ones = torch.ones_like(x[:1, :1])
        count = F.avg_pool2d(F.pad(ones, self.pad), self.kernel, self.stride)
        return total / count

    def extra_repr(self) -> str:
        return f"{self.mode}, kernel={self.kernel}, stride={self.stride}, pad={self.pad}"


class KerasReLU(nn.Module):
    """Keras's ``ReLU(max_value, negative_slope, threshold)`` in general form."""

    def __init__(self, max_value: float | None, negative_slope: float, threshold: float) -> None:
        super().__init__()
        self.max_value, self.negative_slope, self.threshold = max_value, negative_slope, threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.where(x >= self.threshold, x, self.negative_slope * (x - self.threshold))
        return out if self.max_value is None else out.clamp(max=self.max_value)


@dataclass
class WeightSlot:
    """Where one Keras layer's weights go: its position in the config, its type, and the
    torch module (named ``module``) that takes them."""

    index: int
    layer: str
    module: str
    kind: str  # "conv", "dense" or "batchnorm"
    expected: dict[str, tuple[int, ...]] = field(default_factory=dict)


class KerasSequential(nn.Sequential):
    """A converted Keras Sequential model; ``slots`` say where each layer's weights go."""

    def __init__(self, modules: OrderedDict[str, nn.Module], slots: list[WeightSlot],
                 input_shape: tuple[int, ...]) -> None:
        super().__init__(modules)
        self.slots = slots
        self.keras_input_shape = input_shape  # channels last, as in config.json


# -- building ------------------------------------------------------------------------------


@dataclass
class _Layer:
    """What one Keras layer becomes: torch modules, the output shape, where weights go."""

    modules: list[tuple[str, nn.Module]]
    shape: tuple[int, ...]
    slot: WeightSlot | None = None


def _ints(value: Any, n: int, what: str) -> tuple[int, ...]:
    """``value`` (one number, or a list of ``n`` as Keras allows for sizes) as ``n`` positive
    integers; an error naming the argument ``what`` otherwise."""
    values = [value] * n if isinstance(value, int | float) else value
    if not isinstance(values, list | tuple) or len(values) != n or not all(
        _positive_integer(v) for v in values
    ):
        wanted = "a positive integer" if n == 1 else \
            f"a positive integer or a list of {n} positive integers"
        raise ValueError(f"{what} must be {wanted}, got {value!r}")
    return tuple(int(v) for v in values)


def _positive_integer(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and float(value).is_integer() and value >= 1


def _number(value: Any, what: str) -> float:
    """Argument ``what``'s ``value`` as a finite float; an error naming it otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{what} must be a number, got {value!r}")
    return float(value)


def _same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _out_size(size: int, kernel: int, stride: int, padding: str, dilation: int = 1) -> int:
    if padding == "same":
        return math.ceil(size / stride)
    return (size - (kernel - 1) * dilation - 1) // stride + 1


def _padding(kwargs: dict[str, Any]) -> str:
    padding = str(kwargs.pop("padding", "valid")).lower()
    if padding not in ("valid", "same"):
        raise ValueError(f"padding {padding!r} is not supported (valid or same)")
    return padding


def _channels_last(kwargs: dict[str, Any]) -> None:
    data_format = kwargs.pop("data_format", None)
    if data_format not in (None, "channels_last"):
        raise ValueError(f"data_format {data_format!r} is not supported (channels_last)")


def _image(shape: tuple[int, ...], layer: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ValueError(f"{layer} needs image inputs (H, W, C), gets shape {shape}")
    return shape  # type: ignore[return-value]


def unsupported_activation(name: Any, shown: str | None = None) -> str | None:
    """Why the Keras activation ``name`` (``shown`` so in the message, default its repr)
    cannot be converted ("... is not supported (supported: ...)"), or None when it can (None
    and "linear" are no activation)."""
    if name is None or name == "linear" or (isinstance(name, str) and name in ACTIVATIONS):
        return None
    return (f"{shown or repr(name)} is not supported "
            f"(supported: linear, {', '.join(sorted(ACTIVATIONS))})")


def _activation(name: Any, prefix: str) -> list[tuple[str, nn.Module]]:
    if (problem := unsupported_activation(name)) is not None:
        raise ValueError(f"activation {problem}")
    if name is None or name == "linear":
        return []  # no module: a BatchNorm after this layer can still be folded into it
    return [(f"{prefix}_{name}", ACTIVATIONS[name]())]


def _conv2d(i: int, kw: dict[str, Any], shape: tuple[int, ...]) -> _Layer:
    h, w, c = _image(shape, "Conv2D")
    _channels_last(kw)
    filters = _ints(kw.pop("filters"), 1, "filters")[0]
    kh, kwid = _ints(kw.pop("kernel_size"), 2, "kernel_size")
    sh, sw = _ints(kw.pop("strides", 1), 2, "strides")
    dh, dw = _ints(kw.pop("dilation_rate", 1), 2, "dilation_rate")
    if (dh, dw) != (1, 1) and (sh, sw) != (1, 1):
        raise ValueError("dilation_rate and strides both above 1 (Keras refuses this too)")
    groups = _ints(kw.pop("groups", 1), 1, "groups")[0]
    padding = _padding(kw)
    bias = bool(kw.pop("use_bias", True))
    act = kw.pop("activation", None)
    modules: list[tuple[str, nn.Module]] = []
    pad = (0, 0)
    if padding == "same":
        top, bottom = _same_pads(h, kh, sh, dh)
        left, right = _same_pads(w, kwid, sw, dw)
        if (top, left) == (bottom, right):
            pad = (top, left)
        else:  # TensorFlow puts the odd extra row/column at the bottom/right
            modules.append((f"l{i}_pad", nn.ZeroPad2d((left, right, top, bottom))))
    conv = nn.Conv2d(c, filters, (kh, kwid), (sh, sw), pad, (dh, dw), groups, bias)
    modules.append((f"l{i}_conv2d", conv))
    modules += _activation(act, f"l{i}")
    out = (_out_size(h, kh, sh, padding, dh), _out_size(w, kwid, sw, padding, dw), filters)
    expected = {"kernel": (kh, kwid, c // groups, filters)}
    if bias:
        expected["bias"] = (filters,)
    return _Layer(modules, out, WeightSlot(i, "Conv2D", f"l{i}_conv2d", "conv", expected))


def _dense(i: int, kw: dict[str, Any], shape: tuple[int, ...]) -> _Layer:
    if len(shape) != 1:
        raise ValueError(f"Dense on inputs of shape {shape} (add a Flatten before it)")
    units = _ints(kw.pop("units"), 1, "units")[0]
    bias = bool(kw.pop("use_bias", True))
    modules: list[tuple[str, nn.Module]] = [(f"l{i}_dense", nn.Linear(shape[0], units, bias))]
    modules += _activation(kw.pop("activation", None), f"l{i}")
    expected = {"kernel": (shape[0], units)}
    if bias:
        expected["bias"] = (units,)
    return _Layer(modules, (units,), WeightSlot(i, "Dense", f"l{i}_dense", "dense", expected))


def _pool(mode: str) -> Callable[[int, dict[str, Any], tuple[int, ...]], _Layer]:
    layer = "MaxPooling2D" if mode == "max" else "AveragePooling2D"

    def convert(i: int, kw: dict[str, Any], shape: tuple[int, ...]) -> _Layer:
        h, w, c = _image(shape, layer)
        _channels_last(kw)
        kh, kwid = _ints(kw.pop("pool_size", 2), 2, "pool_size")
        strides = kw.pop("strides", None)
        sh, sw = _ints(strides if strides is not None else (kh, kwid), 2, "strides")
        padding = _padding(kw)
        if padding == "same":
            pad = (*_same_pads(w, kwid, sw), *_same_pads(h, kh, sh))
            module: nn.Module = SamePool2d(mode, (kh, kwid), (sh, sw), pad)
        elif mode == "max":
            module = nn.MaxPool2d((kh, kwid), (sh, sw))
        else:
            module = nn.AvgPool2d((kh, kwid), (sh, sw))
        out = (_out_size(h, kh, sh, padding), _out_size(w, kwid, sw, padding), c)
        return _Layer([(f"l{i}_{mode}pool", module)], out)

    return convert


def _global_pool(mode: str) -> Callable[[int, dict[str, Any], tuple[int, ...]], _Layer]:
    def convert(i: int, kw: dict[str, Any], shape: tuple[int, ...]) -> _Layer:
        _, _, c = _image(shape, f"Global{'Average' if mode == 'avg' else 'Max'}Pooling2D")
        _channels_last(kw)
        if kw.pop("keepdims", False):
            raise ValueError("keepdims=True is not supported")
        return _Layer([(f"l{i}_global{mode}pool", GlobalPool(mode))], (c,))

    return convert


def _flatten(i: int, kw: dict[str, Any], shape: tuple[int, ...]) -> _Layer:
    _channels_last(kw)
    return _Layer([(f"l{i}_flatten", KerasFlatten())], (math.prod(shape),))


def _dropout(i: int, kw: dict[str, Any], shape: tuple[int, ...]) -> _Layer:
    rate = _number(kw.pop("rate"), "rate")
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be from 0 to 1, got {rate:g}")
    return _Layer([(f"l{i}_dropout", nn.Dropout(rate))], shape)


def _batchnorm(i: int, kw: dict[str, Any], shape: tuple[int, ...]) -> _Layer:
    axis = kw.pop("axis", -1)
    axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
    if axis not in (-1, len(shape)):
        raise ValueError(f"axis={axis!r} is not supported (the channel axis, -1)")
    for knob in ("renorm", "virtual_batch_size", "adjustment"):
        if kw.pop(knob, None) not in (None, False):
            raise ValueError(f"{knob} is not supported")
    eps = _number(kw.pop("epsilon", 1e-3), "epsilon")  # Keras's default, not torch's 1e-5
    center, scale = bool(kw.pop("center", True)), bool(kw.pop("scale", True))
    features = shape[-1]
    norm_cls = nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d
    if len(shape) not in (1, 3):
        raise ValueError(f"BatchNormalization of inputs of shape {shape} is not supported")
    module = norm_cls(features, eps=eps, affine=center or scale)
    expected = {"moving_mean": (features,), "moving_variance": (features,)}
    if scale:
        expected["gamma"] = (features,)
    if center:
        expected["beta"] = (features,)
    slot = WeightSlot(i, "BatchNormalization", f"l{i}_batchnorm", "batchnorm", expected)
    return _Layer([(f"l{i}_batchnorm", module)], shape, slot)


def _activation_layer(i: int, kw: dict[str, Any], shape: tuple[int, ...]) -> _Layer:
    return _Layer(_activation(kw.pop("activation"), f"l{i}"), shape)


def _relu(i: int, kw: dict[str, Any], shape: tuple[int, ...]) -> _Layer:
    max_value = kw.pop("max_value", None)
    max_value = None if max_value is None else _number(max_value, "max_value")
    slope = _number(kw.pop("negative_slope", 0.0), "negative_slope")
    threshold = _number(kw.pop("threshold", 0.0), "threshold")
    if max_value is None and slope == 0 and threshold == 0:
        module: nn.Module = nn.ReLU()
    else:
        module = KerasReLU(max_value, slope, threshold)
    return _Layer([(f"l{i}_relu", module)], shape)


def _leaky_relu(i: int, kw: dict[str, Any], shape: tuple[int, ...]) -> _Layer:
    alpha = _number(kw.pop("alpha", 0.3), "alpha")  # Keras's default slope
    return _Layer([(f"l{i}_leakyrelu", nn.LeakyReLU(alpha))], shape)


LAYERS: dict[str, Callable[[int, dict[str, Any], tuple[int, ...]], _Layer]] = {
    "Conv2D": _conv2d,
    "Dense": _dense,
    "MaxPooling2D": _pool("max"),
    "AveragePooling2D": _pool("avg"),
    "GlobalAveragePooling2D": _global_pool("avg"),
    "GlobalMaxPooling2D": _global_pool("max"),
    "Flatten": _flatten,
    "Dropout": _dropout,
    "BatchNormalization": _batchnorm,
    "Activation": _activation_layer,
    "ReLU": _relu,
    "LeakyReLU": _leaky_relu,
}


def _integral(value: Any) -> Any:
    """PGDL's loader casts integral floats (256.0) to int before building the layer."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def build_keras(config: dict[str, Any], source: str | Path = "config.json") -> KerasSequential:
    """An untrained torch module for a PGDL model config: ``{"model_config": [layer, ...],
    "input_shape": [...]}``, each layer ``{"layer_name": "Conv2D", **keyword arguments}``.
    ``source`` names the file in errors."""
    layers, input_shape = parse_config(config, source)
    shape = input_shape
    modules: OrderedDict[str, nn.Module] = OrderedDict()
    slots: list[WeightSlot] = []
    for i, layer in enumerate(layers):
        kwargs = {k: _integral(v) for k, v in layer.items() if k != "layer_name"}
        name = layer["layer_name"]
        if name not in LAYERS:
            raise GengapError(
                f"{source}: layer {i} is a {name}, which gengap cannot convert "
                f"(supported: {', '.join(LAYERS)})"
            )
        try:
            converted = LAYERS[name](i, kwargs, shape)
        except (ValueError, TypeError, KeyError) as err:
            problem = f"missing argument {err}" if isinstance(err, KeyError) else err
            raise GengapError(f"{source}: layer {i} ({name}): {problem}") from None
        unknown = sorted(set(kwargs) - _INERT)
        if unknown:
            raise GengapError(
                f"{source}: layer {i} ({name}): argument {unknown[0]!r} is not supported"
            )
        modules.update(converted.modules)
        if converted.slot is not None:
            slots.append(converted.slot)
        shape = converted.shape
    return KerasSequential(modules, slots, input_shape)


def parse_config(config: Any, source: str | Path) -> tuple[list[dict[str, Any]], tuple[int, ...]]:
    """The layer list and input shape of a PGDL ``config.json``, checked."""
    if not isinstance(config, dict) or not isinstance(config.get("model_config"), list):
        raise GengapError(f"{source}: not a PGDL model config (no 'model_config' layer list)")
    shape = config.get("input_shape")
    if not isinstance(shape, list) or not shape or not all(_positive_integer(v) for v in shape):
        raise GengapError(f"{source}: input_shape must be a list of positive integers, got "
                          f"{shape!r}")
    layers = config["model_config"]
    for i, layer in enumerate(layers):
        if not isinstance(layer, dict) or not isinstance(layer.get("layer_name"), str):
            raise GengapError(f"{source}: layer {i} has no 'layer_name'")
    if not layers:
        raise GengapError(f"{source}: the model has no layers")
    return layers, tuple(int(v) for v in shape)


def torch_input_shape(keras_shape: tuple[int, ...]) -> tuple[int, ...]:
    """gengap's layout of one input: (H, W, C) -> (C, H, W); vectors unchanged."""
    if len(keras_shape) == 3:
        h, w, c = keras_shape
        return (c, h, w)
    return tuple(keras_shape)


# -- weights -------------------------------------------------------------------------------


def read_keras_weights(path: str | Path) -> list[tuple[str, dict[str, np.ndarray]]]:
    """``(layer name, {weight name: array})`` for each layer with weights of a Keras HDF5
    weights file (``model.save_weights`` or a whole saved model), in the file's layer order.
    Weight names lose their scope and ``:0`` (``dense_8/kernel:0`` -> ``kernel``)."""
    path = Path(path)
    if not path.is_file():
        raise GengapError(f"{path}: missing weight file")
    try:
        with h5py.File(path, "r") as handle:
            root = handle["model_weights"] if "model_weights" in handle else handle
            if "layer_names" not in root.attrs:
                raise GengapError(f"{path}: not a Keras weights file (no layer_names attribute)")
            out = []
            for raw in root.attrs["layer_names"]:
                name = raw.decode() if isinstance(raw, bytes) else str(raw)
                group = root[name]
                names = [n.decode() if isinstance(n, bytes) else str(n)
                         for n in group.attrs.get("weight_names", [])]
                if not names:
                    continue
                weights = {}
                for weight in names:
                    short = weight.rsplit("/", 1)[-1].split(":", 1)[0]
                    weights[short] = np.asarray(group[weight], dtype=np.float32)
                out.append((name, weights))
            return out
    except GengapError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as err:
        problem = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise GengapError(f"{path}: not a readable Keras HDF5 weights file ({problem})") from None


def keras_state_dict(
    net: KerasSequential, weights: list[tuple[str, dict[str, np.ndarray]]], source: str | Path
) -> dict[str, torch.Tensor]:
    """The torch state dict of ``net`` holding Keras ``weights`` (matched to the config's
    layers in order, as Keras's ``load_weights`` does), converted to torch's layouts."""
    if len(weights) != len(net.slots):
        raise GengapError(
            f"{source}: holds weights for {len(weights)} layers, the config has "
            f"{len(net.slots)} layers with weights"
        )
    state: dict[str, torch.Tensor] = {}
    for slot, (layer_name, arrays) in zip(net.slots, weights, strict=True):
        where = f"{source}: layer {layer_name!r} (config layer {slot.index}, {slot.layer})"
        if set(arrays) != set(slot.expected):
            raise GengapError(
                f"{where}: holds {', '.join(sorted(arrays))}; expected "
                f"{', '.join(sorted(slot.expected))}"
            )
        for key, shape in slot.expected.items():
            if tuple(arrays[key].shape) != shape:
                raise GengapError(
                    f"{where}: {key} has shape {tuple(arrays[key].shape)}, expected {shape}"
                )
        state.update(_convert(slot, arrays))
    module_state = net.state_dict()
    for key, value in module_state.items():  # BN's counter, and absent gamma or beta
        if key not in state:
            if key.endswith(".weight"):
                state[key] = torch.ones_like(value)
            elif key.endswith(".bias"):
                state[key] = torch.zeros_like(value)
            else:
                state[key] = value.clone()
    return state


def _convert(slot: WeightSlot, arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    p = slot.module
    out: dict[str, torch.Tensor] = {}
    if slot.kind == "conv":
        out[f"{p}.weight"] = torch.from_numpy(arrays["kernel"].transpose(3, 2, 0, 1).copy())
    elif slot.kind == "dense":
        out[f"{p}.weight"] = torch.from_numpy(arrays["kernel"].T.copy())
    else:
        out[f"{p}.running_mean"] = torch.from_numpy(arrays["moving_mean"].copy())
        out[f"{p}.running_var"] = torch.from_numpy(arrays["moving_variance"].copy())
        if "gamma" in arrays:
            out[f"{p}.weight"] = torch.from_numpy(arrays["gamma"].copy())
        if "beta" in arrays:
            out[f"{p}.bias"] = torch.from_numpy(arrays["beta"].copy())
        return out
    if "bias" in arrays:
        out[f"{p}.bias"] = torch.from_numpy(arrays["bias"].copy())
    return out


def load_keras(
    config: dict[str, Any], weights_path: str | Path, source: str | Path = "config.json"
) -> KerasSequential:
    """The torch module of a Keras config with the weights of an HDF5 file, in eval mode."""
    net = build_keras(config, source)
    net.load_state_dict(keras_state_dict(net, read_keras_weights(weights_path), weights_path))
    return net.eval()
