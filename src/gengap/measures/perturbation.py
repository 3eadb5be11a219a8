"""The folded network as a function of one flat parameter vector, evaluated for many perturbed
copies of its parameters in one batched forward (``torch.func.functional_call`` under
``vmap``: a convolution with a batch of weights becomes one grouped convolution)."""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, vmap

from gengap.measures.precision import autocast
from gengap.models.channels_last import channels_last_safe


class FlatNet:
    """``model`` (kept in eval mode) with its parameters read from a flat vector (of the
    parameters' dtype: float32 for most models, float64 for a float64 one), computed under
    autocast to ``autocast_dtype`` when given (:mod:`gengap.measures.precision`).

    ``vector`` holds every parameter of the model (for a BatchNorm-folded model: the Linear and
    Conv weights and biases); buffers (BatchNorm statistics that could not be folded) stay fixed.
    """

    def __init__(self, model: nn.Module, device: torch.device,
                 autocast_dtype: torch.dtype | None = None) -> None:
        self.model = model.to(device).eval()
        self.autocast_dtype = autocast_dtype  # see gengap.measures.precision
        named = [(n, p.detach()) for n, p in self.model.named_parameters()]
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        self.vector = torch.cat([p.reshape(-1) for _, p in named]).to(device)
        self.buffers = {n: b for n, b in self.model.named_buffers()}
        self.device = device
        # oneDNN's convolutions run faster on channels-last kernels (bench NiN: a forward and
        # backward pass 1.2x, a forward alone no slower), well worth a copy of them per call,
        # where torch's backward is safe in that order
        self.channels_last = device.type == "cpu" and channels_last_safe(self.model)

    def unflatten(self, vector: torch.Tensor) -> dict[str, torch.Tensor]:
        """The parameters as named tensors (views of ``vector``; conv kernels channels-last
        copies on the CPU)."""
        # a perturbation drawn in float32 promotes a float16 model's vector: back to its dtype
        pieces = torch.split(vector.to(self.vector.dtype), self.sizes)
        views = {n: p.view(s) for n, p, s in zip(self.names, pieces, self.shapes, strict=True)}
        if self.channels_last:
            views = {n: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v
                     for n, v in views.items()}
        return views

    def forward(self, vector: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Logits of the network with parameters ``vector`` on inputs ``x`` (computed under
        autocast to ``autocast_dtype`` when it is set, returned in float32 then)."""
        with autocast(self.device, self.autocast_dtype):
            logits = functional_call(self.model, (self.unflatten(vector), self.buffers), (x,))
        return logits if self.autocast_dtype is None else logits.float()

    @torch.no_grad()
    def forward_many(self, vectors: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
        """Logits ``(K, n, classes)`` of K parameter vectors ``(K, P)``, each on its own inputs
        ``xs[k]`` (``(K, n, ...)``), as one batched computation on a GPU; on the CPU one copy
        at a time, which is faster there (a batch of weights becomes a grouped convolution,
        slower on the CPU than K ordinary ones)."""
        if vectors.device.type == "cpu":
            return torch.stack([self.forward(v, x) for v, x in zip(vectors, xs, strict=True)])
        try:
            return vmap(self.forward)(vectors, xs)
        except (RuntimeError, NotImplementedError):  # a layer without a batching rule
            return torch.stack([self.forward(v, x) for v, x in zip(vectors, xs, strict=True)])
