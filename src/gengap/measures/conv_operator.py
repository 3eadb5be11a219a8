"""Exact operator norms of convolutions as they act in the network: with their own padding
(zeros, or the layer's padding mode), stride, dilation and groups, at each layer's own input
size.

:mod:`gengap.measures.conv_spectrum` gives the norm of the *circular stride-1* convolution by
FFT (Sedghi et al. 2019), the convention of the reference implementation; for a strided layer
that is only an upper bound (8→8 channels, 3×3, 14×14 input, stride 2: 1.137 against 0.861).
A strided, zero-padded convolution has no such closed form, so here its largest singular value
is found numerically from the layer itself: σ_max(A)² = λ_max(AᵀA), where A is the layer's
convolution (bias off) on one input of its size and Aᵀ its pullback, by implicitly restarted
Lanczos (ARPACK, ``scipy.sparse.linalg.eigsh``) to a relative tolerance of 1e-12, in float64.
Small operators are written out as matrices instead (one convolution of the identity basis)
and their norm taken by SVD.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

# Operators with at most this many entries (inputs × outputs) are written out as a matrix.
# Above it Lanczos is faster: a 16→16 3×3 stride-2 convolution on 14×14 inputs (2.5 million
# entries) took 0.43 s written out and 0.02 s by Lanczos (measured, one thread).
DENSE_ENTRIES = 1 << 16
LANCZOS_TOL = 1e-12


@torch.no_grad()
def conv_operator_norm(
    conv: nn.Conv1d | nn.Conv2d | nn.Conv3d, input_size: tuple[int, ...],
    weight: torch.Tensor | None = None, dense_entries: int = DENSE_ENTRIES,
) -> float:
    """The largest singular value of ``conv`` (its bias left out) as a linear map of inputs of
    spatial size ``input_size``, with ``weight`` in place of its own if given (a folded or a
    difference kernel). Exact up to float64 rounding and the Lanczos tolerance (1e-12)."""
    weight = (conv.weight if weight is None else weight).detach().double().cpu()
    if not bool(weight.any()):
        return 0.0
    if _plain_pointwise(conv):
        # Every output position reads one input position through the same c_out × c_in
        # matrix (per group), and distinct outputs read distinct inputs: the norm is that
        # matrix's.
        groups = conv.groups
        blocks = weight.reshape(groups, weight.shape[0] // groups, weight.shape[1])
        return float(torch.linalg.matrix_norm(blocks, ord=2).max())
    shape = (conv.in_channels, *input_size)

    def apply(x: torch.Tensor) -> torch.Tensor:
        # the module's own padding logic (modes, "same"), with the given weight and no bias
        return conv._conv_forward(x, weight, None)

    inputs = math.prod(shape)
    outputs = apply(torch.zeros(1, *shape, dtype=torch.float64)).numel()
    if inputs * outputs <= dense_entries or inputs < 3:  # ARPACK needs more than k + 1
        basis = torch.eye(inputs, dtype=torch.float64).reshape(inputs, *shape)
        return float(torch.linalg.matrix_norm(apply(basis).reshape(inputs, -1), ord=2))
    return math.sqrt(max(_top_gram_eigenvalue(apply, shape), 0.0))


def _plain_pointwise(conv: nn.Module) -> bool:
    """A 1×1 kernel with zero padding of width 0: a matrix applied at every kept position."""
    padding = conv.padding
    return (all(k == 1 for k in conv.kernel_size) and conv.padding_mode == "zeros"
            and (padding == "valid" or (not isinstance(padding, str)
                                        and all(p == 0 for p in padding))))


def _top_gram_eigenvalue(apply, shape: tuple[int, ...]) -> float:
    """λ_max(AᵀA) of the linear map ``apply`` on inputs of ``shape`` (one example), by ARPACK
    from a fixed start, so that the value is reproducible."""
    from scipy.sparse.linalg import LinearOperator, eigsh

    size = math.prod(shape)
    with torch.enable_grad():
        # The map is linear, so its pullback at zero is Aᵀ everywhere.
        _, pullback = torch.func.vjp(apply, torch.zeros(1, *shape, dtype=torch.float64))

    def gram(vector: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(vector, dtype=np.float64)).reshape(1, *shape)
        return pullback(apply(x))[0].reshape(-1).numpy()

    operator = LinearOperator((size, size), matvec=gram, dtype=np.float64)
    start = np.random.default_rng(0).standard_normal(size)
    top = eigsh(operator, k=1, which="LA", v0=start, tol=LANCZOS_TOL,
                return_eigenvectors=False)
    return float(top[0])


def operator_conv_norm(module: nn.Module, weight: torch.Tensor, size: tuple[int, ...]) -> float:
    """:func:`conv_operator_norm` in the form :func:`~gengap.measures.conv_spectrum.
    layer_spectral_norms` takes."""
    return conv_operator_norm(module, size, weight)  # type: ignore[arg-type]
