"""The VC-dimension proxy (Jiang et al. 2020, appendix C.1)."""

from __future__ import annotations

import math

from gengap.measures.context import MeasureContext
from gengap.measures.layers import WEIGHT_LAYERS
from gengap.measures.registry import measure


@measure("vc_dim", group="size", needs=(), cost="A")
def vc_dim(ctx: MeasureContext) -> float:
    """d·ω·log₂(ω): the order of the VC dimension of piecewise-linear (ReLU) networks with ω
    parameters in d layers (Bartlett, Harvey, Liaw & Mehrabian 2019, JMLR 20(63), Theorems 6
    and 7: Θ(ω·d·log ω) up to constants). d counts the Linear and Conv layers. Jiang et al.'s
    eq. 19 is a bound of this order whose constants could not be checked; constants do not
    change rankings."""
    omega = sum(p.numel() for p in ctx.model.parameters() if p.requires_grad)
    depth = sum(isinstance(m, WEIGHT_LAYERS) for m in ctx.model.modules())
    return float(depth * omega * math.log2(max(omega, 2)))
