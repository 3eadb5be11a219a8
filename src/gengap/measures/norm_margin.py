"""The rest of Jiang et al. 2020's norm and margin measures (appendix C.3, eqs. 29–41) and the
``_fft`` variants of Dziugaite et al. 2020 (eqs. 129–141 of their enum).

``W_i`` are the Linear/Conv weight matrices (BatchNorm folded, biases left out), d their
number, γ the 10th-percentile margin. Products can overflow float64, so each product-type
measure also exists as ``log_<name>`` (natural log), computed in log space; the plain value is
``inf`` when the log exceeds float64's range. ``_fft`` measures use the spectral norm of each
convolution by FFT at its input size (:mod:`gengap.measures.conv_spectrum`: that of the circular
stride-1 convolution, an upper bound for a strided one) instead of the norm of the reshaped
kernel; ``_op`` measures the exact norm of each convolution as it acts, with its padding and
stride (:mod:`gengap.measures.conv_operator`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from gengap.measures.context import MeasureContext
from gengap.measures.registry import measure

DATA = ("weights", "train_data")
INIT = ("weights", "init_weights")
INIT_DATA = ("weights", "init_weights", "train_data")


def _exp(log_value: float) -> float:
    return math.exp(log_value) if log_value < 709.0 else math.inf


# How a family's measures take the spectral norm of a convolution (the measure name's suffix):
# the reshaped kernel's, the circular stride-1 convolution's by FFT, or the layer's own.
SPECTRAL_KINDS = {
    "": ". Spectral norms of reshaped kernels.",
    "fft": ", with the spectral norms of convolutions by FFT at each layer's input size "
           "(Sedghi et al. 2019): of the circular stride-1 convolution, as the reference "
           "computes them (an upper bound for a strided one).",
    "op": ", with the exact spectral norm of each convolution as it acts (its own padding, "
          "stride, dilation and groups) at its input size, by Lanczos on AᵀA (ARPACK).",
}


def _spec_sq(ctx: MeasureContext, sfx: str) -> list[float]:
    return [n**2 for n in getattr(ctx, f"spectral_norms{sfx}")]


def _fro_sq(ctx: MeasureContext) -> list[float]:
    return [n**2 for n in ctx.frobenius_norms]


def _dist_fro_sq(ctx: MeasureContext) -> list[float]:
    return [float(((w - w0) ** 2).sum()) for w, w0 in zip(ctx.weights, ctx.init_weights,
                                                          strict=True)]


def _log_prod(values: list[float]) -> float:
    return sum(math.log(v) if v > 0 else -math.inf for v in values)


def _log_sum(log_prod: float, d: int) -> float:
    """log of d·(Π)^{1/d}."""
    return math.log(d) + log_prod / d


def _register(
    name: str, needs: tuple[str, ...], cost: str, doc: str, log_fn: Callable[..., float],
    with_log: bool = True,
) -> None:
    """Register ``log_<name>`` = log_fn(ctx) and ``name`` = exp of it (or only ``name`` =
    log_fn(ctx) when ``with_log`` is false, for sums that never overflow)."""

    def plain(ctx: MeasureContext) -> float:
        return _exp(log_fn(ctx)) if with_log else log_fn(ctx)

    plain.__doc__ = doc
    measure(name, group="norm", needs=needs, cost=cost)(plain)
    if with_log:
        def logged(ctx: MeasureContext) -> float:
            return log_fn(ctx)

        logged.__doc__ = f"log of {name}: {doc}"
        measure(f"log_{name}", group="norm", needs=needs, cost=cost)(logged)


def _log_gamma_sq(ctx: MeasureContext) -> float:
    return 2 * math.log(ctx.gamma) if ctx.gamma > 0 else -math.inf


def _spectral_family(kind: str) -> None:
    sfx = f"_{kind}" if kind else ""
    how = SPECTRAL_KINDS[kind]

    def shaped(needs: tuple[str, ...]) -> tuple[str, ...]:
        """A convolution's norm by FFT or as an operator depends on its input's size."""
        return (*needs, "input_shape") if kind else needs

    def lp(ctx: MeasureContext) -> float:
        return _log_prod(_spec_sq(ctx, sfx))

    if kind:  # the reshaped prod_of_spec and prod_of_spec_over_margin are in norms.py/output.py
        _register(f"prod_of_spec{sfx}", shaped(("weights",)), "B",
                  "Π_i ‖W_i‖₂² (Jiang et al. 2020, eq. 32)" + how, lp)
        _register(f"prod_of_spec_over_margin{sfx}", shaped(DATA), "B",
                  "Π_i ‖W_i‖₂² / γ² (Jiang et al. 2020, eq. 31)" + how,
                  lambda ctx: lp(ctx) - _log_gamma_sq(ctx))
    else:
        measure("log_prod_of_spec", group="norm", cost="B")(_doc(
            lp, "log Π_i ‖W_i‖₂² (Jiang et al. 2020, eq. 32, in log space)" + how))
        measure("log_prod_of_spec_over_margin", group="norm", needs=DATA, cost="B")(_doc(
            lambda ctx: lp(ctx) - _log_gamma_sq(ctx),
            "log(Π_i ‖W_i‖₂² / γ²) (Jiang et al. 2020, eq. 31, in log space)" + how))
    _register(f"sum_of_spec{sfx}", shaped(("weights",)), "B",
              "d·(Π_i ‖W_i‖₂²)^{1/d} (Jiang et al. 2020, eq. 35)" + how,
              lambda ctx: _log_sum(lp(ctx), len(ctx.weights)))
    _register(f"sum_of_spec_over_margin{sfx}", shaped(DATA), "B",
              "d·(Π_i ‖W_i‖₂² / γ²)^{1/d} (Jiang et al. 2020, eq. 34)" + how,
              lambda ctx: _log_sum(lp(ctx) - _log_gamma_sq(ctx), len(ctx.weights)))
    _register(f"spec_init_main{sfx}", shaped(INIT_DATA), "B",
              "Π_i ‖W_i‖₂² / γ² · Σ_i ‖W_i − W_i⁰‖_F² / ‖W_i‖₂² (Jiang et al. 2020, eq. 29)"
              + how,
              lambda ctx: lp(ctx) - _log_gamma_sq(ctx) + math.log(sum(
                  f / s for f, s in zip(_dist_fro_sq(ctx), _spec_sq(ctx, sfx), strict=True))))
    _register(f"spec_orig_main{sfx}", shaped(DATA), "B",
              "Π_i ‖W_i‖₂² / γ² · Σ_i ‖W_i‖_F² / ‖W_i‖₂² (Jiang et al. 2020, eq. 30)" + how,
              lambda ctx: lp(ctx) - _log_gamma_sq(ctx) + math.log(sum(
                  f / s for f, s in zip(_fro_sq(ctx), _spec_sq(ctx, sfx), strict=True))))
    _register(f"fro_over_spec{sfx}", shaped(("weights",)), "B",
              "Σ_i ‖W_i‖_F² / ‖W_i‖₂²: a sum of stable ranks (Jiang et al. 2020, eq. 33)"
              + how,
              lambda ctx: sum(f / s for f, s in zip(_fro_sq(ctx), _spec_sq(ctx, sfx),
                                                     strict=True)), with_log=False)
    dist = f"distance_spectral_norms{sfx}"
    _register(f"dist_spec_init{sfx}", shaped(INIT), "B",
              "Σ_i ‖W_i − W_i⁰‖₂² (Jiang et al. 2020, eq. 41)" + how,
              lambda ctx: sum(n**2 for n in getattr(ctx, dist)), with_log=False)


def _doc(fn: Callable[[MeasureContext], float], doc: str) -> Callable[[MeasureContext], float]:
    def wrapped(ctx: MeasureContext) -> float:
        return fn(ctx)

    wrapped.__doc__ = doc
    return wrapped


def _frobenius_family() -> None:
    def lp(ctx: MeasureContext) -> float:
        return _log_prod(_fro_sq(ctx))

    measure("log_prod_of_fro", group="norm", cost="A")(_doc(
        lp, "log Π_i ‖W_i‖_F² (Jiang et al. 2020, eq. 37, in log space)."))
    _register("prod_of_fro_over_margin", DATA, "C",
              "Π_i ‖W_i‖_F² / γ² (Jiang et al. 2020, eq. 36).",
              lambda ctx: lp(ctx) - _log_gamma_sq(ctx))
    _register("sum_of_fro", ("weights",), "A",
              "d·(Π_i ‖W_i‖_F²)^{1/d} (Jiang et al. 2020, eq. 39).",
              lambda ctx: _log_sum(lp(ctx), len(ctx.weights)))
    _register("sum_of_fro_over_margin", DATA, "C",
              "d·(Π_i ‖W_i‖_F² / γ²)^{1/d} (Jiang et al. 2020, eq. 38).",
              lambda ctx: _log_sum(lp(ctx) - _log_gamma_sq(ctx), len(ctx.weights)))


for _kind in SPECTRAL_KINDS:
    _spectral_family(_kind)
_frobenius_family()
