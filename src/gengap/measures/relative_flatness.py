"""Relative flatness (Petzka, Kamp, Adilova, Sminchisescu & Boley, NeurIPS 2021).

For a layer with weight matrix W (rows w_s: the incoming weights of its neuron s, a conv filter
flattened for a convolution) and the mean training cross-entropy L,

    κ_Tr(W) = Σ_{s,s'} ⟨w_s, w_s'⟩ · Tr(H_{s,s'}),   H_{s,s'} = ∂²L / ∂w_s ∂w_s'.

Rescaling neuron s (w_s and its bias by λ_s > 0, the next layer's weights out of s by 1/λ_s, a
ReLU in between) leaves the function unchanged, multiplies ⟨w_s, w_s'⟩ by λ_s λ_s' and
H_{s,s'} by 1/(λ_s λ_s'): κ_Tr is unchanged term by term, where a plain Hessian trace is not.

How it is computed, exactly and without forming a Hessian: the layer's output z is linear in W,
z_{i,p} = W P_{i,p} + b (P_{i,p} the layer's input at position p: the input vector of a Linear
layer, the p-th patch of a convolution). So with Q_i = (⟨P_{i,p}, P_{i,q}⟩)_{p,q},

    κ_Tr = (1/N) Σ_i Σ_{p,q} Q_i[p, q] Tr(G Z_i[p, q]),   G = W Wᵀ,

Z_i the Hessian of example i's loss with respect to its z. When everything after the layer is
piecewise linear (ReLU, max/average pooling, BatchNorm and dropout in eval mode, Linear and
Conv layers: all of gengap's ReLU families), Z_i = J_iᵀ A_i J_i exactly (almost everywhere),
J_i = ∂logits_i/∂z_i and A_i = diag(p_i) − p_i p_iᵀ the softmax cross-entropy's curvature, so

    κ_Tr = (1/N) Σ_i Tr(A_i M_i),   M_i[c, c'] = Σ_{p,q} Q_i[p, q] · J_i[c, :, p] G J_i[c', :, q],

which needs one forward pass and one backward pass per class through the layers after W.
M_i is a Gram matrix (of u_c = Wᵀ J_i[c] Pᵢᵀ) and A_i a covariance, so Tr(A_i M_i) =
Σ_c p_c ‖u_c − Σ_c' p_c' u_c'‖²: it is computed from the Jacobians centred on their p-weighted
mean and scaled by √p_c, a sum of nonnegative terms. Unlike Σ_c p_c M_cc − pᵀMp, which cancels
as p nears a one-hot vector (a well-trained network), this keeps full relative precision in the
model's own dtype (float32 for a float32 model; the sum over examples is float64).
After a smooth activation (tanh, GELU) this is the Gauss-Newton part of the Hessian: it drops
Σ_c (p_c − y_c) ∇²_z logit_c, which vanishes as the training loss does.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from gengap.measures.features import weight_layers, weight_layers_as_run
from gengap.measures.patches import layer_patches, parameters_frozen
from gengap.measures.registry import NotApplicable

JACOBIAN_BUDGET = 2**24  # entries per Jacobian tensor (64 MiB in float32)


@torch.no_grad()
def feature_layer(model: nn.Module, probe: torch.Tensor | None = None) -> tuple[str, nn.Module]:
    """The layer that produces the penultimate features: the Linear/Conv layer that runs last
    before the head (the last one to run) on ``probe`` inputs, or without them the last but
    one registered. Running order matters in residual blocks, whose shortcut convolution may
    be registered after the block's last convolution but runs before it."""
    layers = weight_layers(model) if probe is None else weight_layers_as_run(model, probe)
    if len(layers) < 2:
        raise NotApplicable("relative flatness needs a layer before the head")
    return layers[-2]


class LayerCurvature:
    """κ_Tr of one Linear or Conv ``layer``, summed batch by batch over forward passes of its
    model (the module docstring's formula). While :meth:`attached` is open, the layer's output
    becomes a leaf that the rest of the network is differentiated from (nothing before it
    builds a graph); :meth:`add` takes each batch's logits. So the sum can ride along a pass
    over the data that is made anyway (the logits pass, ``MeasureContext.plan``)."""

    def __init__(self, layer: nn.Module) -> None:
        self.layer = layer
        self.total = 0.0  # Σ_i Tr(A_i M_i), float64
        self.examples = 0
        self.seconds = 0.0  # spent in :meth:`add`: what riding along a pass costs it
        self._grabbed: dict[str, torch.Tensor] = {}

    @property
    def value(self) -> float:
        """κ_Tr over the examples added so far."""
        return self.total / self.examples

    @contextmanager
    def attached(self, model: nn.Module) -> Iterator[LayerCurvature]:
        """The hook on the layer, the model's parameters frozen and gradients enabled."""
        handle = self.layer.register_forward_hook(self._hook)
        try:
            with parameters_frozen(model), torch.enable_grad():
                yield self
        finally:
            handle.remove()
            self._grabbed.clear()  # the last batch's tensors

    def _hook(self, _m: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor
              ) -> torch.Tensor:
        self._grabbed["input"] = inputs[0].detach()
        self._grabbed["z"] = output.detach().requires_grad_(True)
        # differentiate the rest of the network with respect to z; through a copy, which an
        # in-place activation after the layer (ReLU(inplace=True)) may overwrite
        return self._grabbed["z"].clone()

    def batch_size(self, model: nn.Module, probe: torch.Tensor, most: int) -> int:
        """At most ``most``, and few enough examples that a batch's Jacobians, (classes,
        batch, out, positions), stay within :data:`JACOBIAN_BUDGET` (runs ``probe``, one
        input, with the hook attached)."""
        classes = model(probe).shape[1]
        per_example = classes * self._grabbed["z"].numel()
        return max(1, min(most, JACOBIAN_BUDGET // per_example))

    def add(self, logits: torch.Tensor) -> None:
        """Add the batch whose forward pass gave ``logits`` (the last one run)."""
        started = time.perf_counter()
        jac = self._jacobians(logits)  # (C, b, out, positions)
        dtype = torch.promote_types(jac.dtype, torch.float32)  # half: in float32
        jac = jac.to(dtype)
        p = torch.softmax(logits.detach().double(), dim=1).to(dtype).T  # (C, b)
        # √p_c (J[c] − Σ_c' p_c' J[c']): Tr(A M) becomes a sum of squares
        centred = jac - torch.einsum("cb,cbsp->bsp", p, jac)
        centred.mul_(p.sqrt()[:, :, None, None])
        w = self.layer.weight.detach().reshape(self.layer.weight.shape[0], -1).to(dtype)
        patches = layer_patches(self.layer, self._grabbed["input"]).to(dtype)  # (b, in·k, pos)
        overlap = patches.transpose(1, 2) @ patches  # Q: (b, positions, positions)
        # Tr(A M) = Σ_c Tr(V_c Q V_cᵀ), V_c = Wᵀ centred[c] (the Gram G = W Wᵀ)
        v = torch.matmul(w.T, centred)  # (C, b, in·k, positions)
        per_row = torch.linalg.vecdot(torch.matmul(v, overlap).flatten(2), v.flatten(2))
        self.total += float(per_row.sum(dtype=torch.float64))
        self.examples += len(logits)
        self.seconds += time.perf_counter() - started

    def _jacobians(self, logits: torch.Tensor) -> torch.Tensor:
        """J[c, i, s, p] = ∂logits[i, c] / ∂z[i, s, p], one backward pass per class
        (examples are independent in eval mode, so the gradient of a column's sum is per
        example)."""
        z, rows = self._grabbed["z"], []
        for c in range(logits.shape[1]):
            (grad,) = torch.autograd.grad(logits[:, c].sum(), z, retain_graph=True)
            if isinstance(self.layer, nn.Linear):  # (batch, ..., out) -> (batch, out, pos)
                grad = grad.reshape(len(grad), -1, grad.shape[-1]).transpose(1, 2)
            else:  # (batch, out, *spatial) -> (batch, out, positions)
                grad = grad.reshape(len(grad), grad.shape[1], -1)
            rows.append(grad)
        return torch.stack(rows)


def relative_flatness_of_layer(
    model: nn.Module,
    layer: nn.Module,
    x: torch.Tensor,
    device: torch.device,
    batch_size: int = 256,
) -> float:
    """κ_Tr = Σ_{s,s'} ⟨w_s, w_s'⟩ Tr(H_{s,s'}) of ``layer`` (a Linear or Conv layer of
    ``model``) for the mean softmax cross-entropy on inputs ``x``, by the module docstring's
    formula: exact when the layers after ``layer`` are piecewise linear. The labels do not
    enter (the cross-entropy's Hessian in the logits is diag p − p pᵀ whatever the label)."""
    model = model.eval()
    curvature = LayerCurvature(layer)
    with curvature.attached(model):
        batch_size = curvature.batch_size(model, x[:1].to(device), batch_size)
        for i in range(0, len(x), batch_size):
            curvature.add(model(x[i : i + batch_size].to(device)))
    return curvature.value


def relative_flatness_normalized_head(
    features: torch.Tensor, logits: torch.Tensor, head: torch.Tensor
) -> float:
    """κ_Tr of the head W (classes × features) on the penultimate features φ normalized to
    unit standard deviation over the training set (φ̃_j = φ_j/σ_j, W̃_{:,j} = σ_j W_{:,j}, the
    same function), as Petzka et al.'s experiments compute it. A constant feature (σ_j = 0, a
    dead ReLU say) acts as a bias: it is moved into the head's bias, which κ does not see
    (φ̃_j = 0, W̃_{:,j} = 0); Petzka et al.'s code leaves it unscaled, which lets an arbitrary
    weight on a dead feature change κ. The head's Hessian blocks have the closed form
    H_{s,s'} = (1/N) Σ_i (diag p_i − p_i p_iᵀ)_{ss'} φ̃_i φ̃_iᵀ, so
    κ = (1/N) Σ_i ‖φ̃_i‖² Tr(W̃W̃ᵀ (diag p_i − p_i p_iᵀ)): one forward pass. The normalization
    makes it invariant to rescaling the penultimate neurons."""
    feats = features.double()
    scale = feats.std(dim=0, unbiased=False)
    live = scale > 0
    feats = torch.where(live, feats / torch.where(live, scale, 1.0), 0.0)
    head = head.double().to(scale.device) * scale  # a constant feature's column becomes 0
    p = torch.softmax(logits.double().to(feats.device), dim=1)
    gram = head @ head.T
    # Tr(G (diag p − p pᵀ)) = Σ_s G_ss p_s − pᵀ G p
    curvature = p @ gram.diagonal() - ((p @ gram) * p).sum(dim=1)
    return float((feats.pow(2).sum(dim=1) * curvature).mean())
