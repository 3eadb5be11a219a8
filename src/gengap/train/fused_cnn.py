"""The training step of a population of Small CNN Zoo networks as one compiled kernel
(``kernels/small_cnn.cpp``): each member's forward pass, cross-entropy and backward pass,
example by example, with every activation in the core's cache.

It serves the ``cnn`` family as the Small CNN Zoo defines it: 3x3 convolutions of 16 filters at
stride 2 with padding 1 and biases, each followed by a ReLU, global average pooling and a dense
layer (any depth, input channels, image size and class count), in float32 on the CPU. Other
shapes take the wide forward of :mod:`gengap.train.wide`.
"""

from __future__ import annotations

import ctypes

import torch
from torch import nn

from gengap.native import library, turned_off, why_unavailable

WIDTH = 16  # the kernel holds a pixel's 16 channels in one vector
KERNEL = "small_cnn"


class FusedSmallCNN:
    """Cross-entropies and gradients of stacked Small CNN Zoo networks, computed by the
    compiled kernel. Build it with :meth:`for_template`."""

    def __init__(self, lib: ctypes.CDLL, depth: int, classes: int) -> None:
        self.depth, self.classes = depth, classes
        self._step = lib.small_cnn_step
        self._step.restype = ctypes.c_int
        self._step.argtypes = [ctypes.c_void_p, ctypes.c_void_p, *[ctypes.c_int64] * 7,
                               ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                               ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
        self._logits = lib.small_cnn_logits
        self._logits.restype = ctypes.c_int
        self._logits.argtypes = [ctypes.c_void_p, *[ctypes.c_int64] * 6, ctypes.c_void_p,
                                 ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
                                 ctypes.c_int64]

    @classmethod
    def for_template(cls, template: nn.Module, device: torch.device) -> FusedSmallCNN | None:
        """The kernel for networks shaped like ``template`` on ``device``, or None when it
        does not apply (another shape, not float32 on the CPU) or cannot be built here
        (:func:`unavailable_reason`)."""
        depth = small_cnn_depth(template)
        if device.type != "cpu" or depth is None:
            return None
        lib = library(KERNEL)
        if lib is None or not _vectorized(lib):
            return None
        return cls(lib, depth, template[-1].out_features)

    def __call__(self, flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                 threads: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Each network's cross-entropy on each example, ``(P, N)``, and the gradient of each
        network's mean cross-entropy over the batch in its parameters, ``(P, F)`` in the
        order of ``flat``'s rows (the networks' parameters in torch's order), on ``threads``
        threads (networks split among them)."""
        flat, x, shape = self._checked(flat, x)
        if y.is_floating_point() or y.is_complex():
            raise ValueError(f"labels are class indices, not {y.dtype}")
        y = y.detach().to("cpu", torch.int64).contiguous()
        if y.shape != (len(x),) or not len(x):
            raise ValueError(f"{len(x)} examples need as many labels, one each, not shape "
                             f"{tuple(y.shape)}" if len(x) else "an empty batch has no mean loss")
        ces = torch.empty(len(flat), len(x))
        gradient = torch.empty_like(flat)
        self._raise_for(self._step(x.data_ptr(), y.data_ptr(), *shape, self.depth, self.classes,
                                   len(x), flat.data_ptr(), *flat.shape, ces.data_ptr(),
                                   gradient.data_ptr(), max(1, threads)), flat, x)
        return ces, gradient

    def logits(self, flat: torch.Tensor, x: torch.Tensor, threads: int = 1) -> torch.Tensor:
        """Each network's logits on ``x``, ``(P, N, classes)``: the forward pass alone."""
        flat, x, shape = self._checked(flat, x)
        logits = torch.empty(len(flat), len(x), self.classes)
        if not len(x):
            return logits
        self._raise_for(self._logits(x.data_ptr(), *shape, self.depth, self.classes,
                                     flat.data_ptr(), *flat.shape, logits.data_ptr(),
                                     max(1, threads)), flat, x)
        return logits

    @staticmethod
    def _checked(flat: torch.Tensor, x: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
        """Both as the kernel reads them (contiguous float32 on the CPU), and x's shape."""
        if x.dim() != 4 or min(x.shape[1:]) < 1:
            raise ValueError(f"the kernel takes images (N, C, H, W), not shape {tuple(x.shape)}")
        if flat.dim() != 2:
            raise ValueError(f"parameters come as one row per network, not shape "
                             f"{tuple(flat.shape)}")
        flat = flat.detach().to("cpu", torch.float32).contiguous()
        x = x.detach().to("cpu", torch.float32).contiguous()
        return flat, x, tuple(x.shape)

    def _raise_for(self, code: int, flat: torch.Tensor, x: torch.Tensor) -> None:
        if code == -3:
            raise MemoryError("the kernel could not have its memory or threads")
        if code not in (0, -1, -2):
            raise RuntimeError(f"the kernel returned {code}")
        if code == -1:
            raise ValueError(f"labels outside 0..{self.classes - 1}")
        if code == -2:
            raise ValueError(f"{flat.shape[1]} parameters per network do not fit a "
                             f"depth-{self.depth} Small CNN Zoo network on {x.shape[1]}-channel "
                             "images")


def small_cnn_depth(template: nn.Module) -> int | None:
    """The number of convolutions when ``template`` is a Small CNN Zoo network the kernel
    runs (see the module's description), else None. Only plain torch modules qualify: no
    subclass with a forward of its own, no hooks (the kernel would skip them), and each layer's
    parameters its own ``weight`` and ``bias``."""
    if type(template) is not nn.Sequential or len(template) < 5 or _has_hooks(template):
        return None
    names = [name for name, _ in template.named_parameters(remove_duplicate=False)]
    expected = [f"{i}.{kind}" for i, m in enumerate(template)
                if isinstance(m, nn.Conv2d | nn.Linear) for kind in ("weight", "bias")]
    # a layer run twice (its parameters named twice), or reparametrized (weight_norm's weight_g)
    if names != expected or len(list(template.parameters())) != len(names):
        return None
    *body, pool, flatten, dense = template
    if len(body) % 2 or not (
        isinstance(pool, nn.AdaptiveAvgPool2d) and pool.output_size in (1, (1, 1))
        and isinstance(flatten, nn.Flatten) and flatten.start_dim == 1 and flatten.end_dim == -1
        and type(dense) is nn.Linear and dense.in_features == WIDTH and dense.bias is not None
    ):
        return None
    for conv, activation in zip(body[::2], body[1::2], strict=True):
        if not (type(conv) is nn.Conv2d and type(activation) is nn.ReLU
                and conv.out_channels == WIDTH and conv.kernel_size == (3, 3)
                and conv.stride == (2, 2) and conv.padding == (1, 1)
                and conv.dilation == (1, 1) and conv.groups == 1
                and conv.padding_mode == "zeros" and conv.bias is not None):
            return None
    if any(p.dtype != torch.float32 for p in template.parameters()) or any(
            True for _ in template.buffers()):
        return None
    return len(body) // 2


def _has_hooks(template: nn.Module) -> bool:
    from torch.nn.modules import module as torch_module

    if any(getattr(torch_module, name, None) for name in (
            "_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
            "_global_backward_pre_hooks")):
        return True
    return any(getattr(m, name, None) for m in template.modules() for name in (
        "_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"))


def unavailable_reason() -> str | None:
    """Why the kernel is not used here: turned off, not built or loaded, or built without
    AVX-512 (None if it is used, or was not asked for yet)."""
    reason = why_unavailable(KERNEL)
    if reason is None and _SLOW:
        return _SLOW[0]
    return reason


def build_fault() -> str | None:
    """Why the kernel could not be built or loaded here, where that is a fault to tell the
    user of (None when it was turned off by choice, or built but slow on this CPU)."""
    return None if turned_off() else why_unavailable(KERNEL)


_SLOW: list[str] = []  # why a build that loads is not used, once known


def _vectorized(lib: ctypes.CDLL) -> bool:
    """Whether the build holds a pixel's 16 channels in one AVX-512 register. Without it the
    kernel's sums spill out of the registers: on the development CPU a step of 16 networks at
    batch 512 took 1.0-1.07 s built for AVX2 and 0.82 s built without ``-march``, against
    0.09 s built for AVX-512 and about 0.19 s through the wide forward (measured)."""
    lib.small_cnn_vectorized.restype = ctypes.c_int
    if lib.small_cnn_vectorized():
        return True
    if not _SLOW:
        _SLOW.append("it was built for a CPU without AVX-512, where it is slower than the "
                     "wide forward")
    return False
