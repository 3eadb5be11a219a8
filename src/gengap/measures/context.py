"""What measures share: the model, its data, and cached intermediate results.

Everything expensive is a cached property, computed the first time a measure asks for it, so
a suite costs one pass over the training data however many data measures it holds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from functools import cached_property  # noqa: F401  (for measures' own properties)
from typing import Any

import numpy as np
import torch
from torch import nn

from gengap.data.splits import plain_strides
from gengap.device import resolve_device
from gengap.errors import GengapError
from gengap.measures.batching import auto_batch_size
from gengap.measures.context_checks import (
    as_tensor,
    check_finite_weights,
    check_fixed_function,
    check_heldout,
    check_outputs,
    check_same_architecture,
    checked_inputs,
    checked_labels,
    model_dtype,
    unwrapped,
)
from gengap.measures.layers import (
    Fold,
    batchnorm_folds,
    fold_batchnorm,
    forward_copy,
    weight_matrices,
)
from gengap.measures.profiling import charge, shared_pass
from gengap.memory_reuse import reuse_large_blocks
from gengap.specs import MeasureOptions


class MeasureContext:
    """A trained model with what its measures may need.

    Args:
        model: the trained network (any torch module built of Linear/Conv/BatchNorm layers,
            returning class logits). It is put in eval mode and moved to ``device`` in place,
            as the measures need (a ``DataParallel`` wrapper: the module it runs).
        init_model: the same network at initialization, for distance-to-init measures.
        x_train, y_train: the training set, for data measures (tensors, or numpy arrays).
        input_shape: one input's shape (taken from ``x_train``, else ``x_heldout``, when not
            given).
        device: where forward passes run (``auto`` picks CUDA when present).
        batch_size: batch size of forward passes (default: chosen by
            :func:`gengap.measures.batching.auto_batch_size`).
        options: knobs of the searching and sampling measures (σ′, α′, gradient noise).
        trajectory: records of the training run (``steps_to_ce_0.1``, ``steps_to_ce_0.01``,
            ``batch_size``), for the optimization measures.
        second_model: a run of the same spec with another seed, for the agreement measures.
        x_heldout: unlabeled held-out inputs (the test split), for the agreement measures.

    The arguments are checked first (:mod:`gengap.measures.context_checks`): finite weights,
    the initial and second models of the model's architecture, one integer label per example
    within the model's classes, finite inputs the model takes (float inputs are cast to the
    model's dtype); a one-line :class:`GengapError` otherwise.
    """

    def __init__(
        self,
        model: nn.Module,
        init_model: nn.Module | None = None,
        x_train: torch.Tensor | np.ndarray | None = None,
        y_train: torch.Tensor | np.ndarray | None = None,
        input_shape: tuple[int, ...] | None = None,
        device: str | torch.device = "auto",
        batch_size: int | None = None,
        options: MeasureOptions | None = None,
        trajectory: Mapping[str, Any] | None = None,
        second_model: nn.Module | None = None,
        x_heldout: torch.Tensor | np.ndarray | None = None,
    ) -> None:
        self.device = resolve_device(device)
        if self.device.type == "cpu":
            reuse_large_blocks()  # large batches would otherwise be mapped afresh each time
        model, init_model, second_model = (unwrapped(m) for m in (model, init_model,
                                                                  second_model))
        if batch_size is not None and batch_size < 1:
            raise GengapError(f"batch_size must be at least 1, not {batch_size}")
        x_train, y_train, x_heldout = (as_tensor(v, what) for v, what in (
            (x_train, "x_train"), (y_train, "y_train"), (x_heldout, "x_heldout")))
        check_finite_weights(model, "the model")
        check_fixed_function(model)
        for other, what in ((init_model, "init_model"), (second_model, "second_model")):
            if other is not None:
                check_same_architecture(model, other, what)
                check_finite_weights(other, what)
        self.model = model.to(self.device).eval()
        self.init_model = init_model.to(self.device).eval() if init_model is not None else None
        if x_train is not None and y_train is not None:
            y_train = checked_labels(x_train, y_train)
        if x_train is not None:
            x_train = checked_inputs(x_train, model, "x_train")
            check_outputs(self.model, x_train, y_train, self.device)
        if x_heldout is not None:
            check_heldout(x_heldout, x_train)
            x_heldout = checked_inputs(x_heldout, model, "x_heldout")
        # a channels-last-strided 1-channel batch would carry that order into the backward passes
        self.x_train, self.y_train = _plain(x_train), y_train
        if input_shape is None and (x_train is not None or x_heldout is not None):
            input_shape = tuple((x_train if x_train is not None else x_heldout).shape[1:])
        self.input_shape = input_shape
        self.batch_size = batch_size or auto_batch_size(
            self.model, x_train[:2] if x_train is not None else None, self.device)
        self.options = options or MeasureOptions()
        self.trajectory = dict(trajectory) if trajectory is not None else None
        self.second_model = (
            second_model.to(self.device).eval() if second_model is not None else None
        )
        self.x_heldout = _plain(x_heldout)
        self._values: dict[str, Any] = {}
        self.pass_seconds: dict[str, float] = {}  # filled by @shared_pass properties
        # measure -> why its value is NaN (its formula does not apply here: NotApplicable)
        self.no_value: dict[str, str] = {}
        self.details: dict[str, Any] = {}  # what measures found besides the value
        self.planned: frozenset[str] = frozenset()  # measures still to come (plan)
        # results of computations that rode along a shared pass, by measure (relative_flatness)
        self.pass_extras: dict[str, Any] = {}

    def plan(self, names: Iterable[str]) -> None:
        """Say which measures will be asked for, so that one pass over the data can serve
        several: with ``relative_flatness`` planned, the logits pass computes it on the way
        (it saves that measure's own forward pass over the training set). :func:`compute` and
        :func:`profile` plan what they are given; call it first when asking :meth:`value` for
        measures one at a time. A measure leaves the plan when it is asked for."""
        self.planned = self.planned | frozenset(names)

    def reasons(self, names: Iterable[str]) -> dict[str, str]:
        """:attr:`no_value` of the measures ``names`` only (not those they are built on)."""
        wanted = set(names)
        return {name: why for name, why in self.no_value.items() if name in wanted}

    def value(self, name: str) -> float:
        """The value of registered measure ``name``, computed once per context (measures
        built on others, like path_norm_over_margin, ask for them here)."""
        if name not in self._values:
            from gengap.measures.registry import NotApplicable, measures

            before = set(self.no_value)
            self.planned = self.planned - {name}  # asked for now: no pass need serve it later
            try:
                result = measures.get(name).fn(self)
            except NotApplicable as err:
                result = float("nan")
                self.no_value[name] = str(err)
            except GengapError as err:  # what it lacks, say for which measure
                if str(err).startswith(name):
                    raise
                raise GengapError(f"{name}: {err}") from None
            # NaN because a measure it is built on has no value (db_mixup): the same reason
            inner = [why for n, why in self.no_value.items() if n not in before]
            if inner and name not in self.no_value and isinstance(result, float) \
                    and math.isnan(result):
                self.no_value[name] = inner[0]
            # vector-valued measures (weight_stats) return a dict of named floats
            self._values[name] = result if isinstance(result, dict) else float(result)
        return self._values[name]

    # -- requirements ----------------------------------------------------------------------

    def require_init(self) -> nn.Module:
        if self.init_model is None:
            raise GengapError("this measure needs the initial weights (init_model)")
        return self.init_model

    def require_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.x_train is None or self.y_train is None:
            raise GengapError("this measure needs the training data (x_train, y_train)")
        return self.x_train, self.y_train

    @property
    def num_examples(self) -> int:
        return len(self.require_data()[1])

    # -- weights ---------------------------------------------------------------------------

    @cached_property
    def example_input(self) -> torch.Tensor | None:
        """Two inputs on the device for the passes that read the model's dataflow (which
        layer feeds which BatchNorm): the first training examples, else Gaussian inputs of
        ``input_shape`` (None without either; then a model with BatchNorm cannot be folded)."""
        if self.x_train is not None:
            return self.x_train[:2].to(self.device)
        if self.input_shape is None:
            return None
        dtype = model_dtype(self.model) or torch.float32
        gen = torch.Generator().manual_seed(self.options.seed)
        return torch.randn((2, *self.input_shape), generator=gen, dtype=dtype).to(self.device)

    @cached_property
    def batchnorm_folds(self) -> list[Fold]:
        """Which layer takes which BatchNorm when folding (:func:`batchnorm_folds`): found once
        for the architecture, so the initial and final models fold alike."""
        return batchnorm_folds(self.model, self.example_input)

    @shared_pass
    def folded(self) -> nn.Module:
        """The model with BatchNorm folded into the layers feeding it (:func:`fold_batchnorm`)."""
        return fold_batchnorm(self.model, folds=self.batchnorm_folds)

    @cached_property
    def folded_init(self) -> nn.Module:
        """The initial model, folded likewise."""
        return fold_batchnorm(self.require_init(), folds=self.batchnorm_folds)

    @cached_property
    def forward_model(self) -> nn.Module:
        """The model for forward passes without gradients (:func:`forward_copy`: BatchNorm
        folded, channels-last on the CPU): the same function up to float rounding, faster."""
        return forward_copy(self.model, None, self.batchnorm_folds)[0]

    @cached_property
    def weights(self) -> list[torch.Tensor]:
        """Per-layer weight matrices of the folded model (float64; biases excluded). A model
        without Linear or Conv layers has none: the weight measures do not apply to it (NaN),
        rather than read as the empty product 1 or sum 0."""
        from gengap.measures.registry import NotApplicable

        found = [w for _, w in weight_matrices(self.folded)]
        if not found:
            raise NotApplicable("no Linear or Conv layer: the weight measures need one")
        return found

    @shared_pass
    def init_weights(self) -> list[torch.Tensor]:
        return [w for _, w in weight_matrices(self.folded_init)]

    @shared_pass
    def spectral_norms(self) -> list[float]:
        """‖W‖₂ per layer, of the reshaped kernel for convolutions."""
        return [float(torch.linalg.matrix_norm(w, ord=2)) for w in self.weights]

    @cached_property
    def frobenius_norms(self) -> list[float]:
        return [float(torch.linalg.matrix_norm(w, ord="fro")) for w in self.weights]

    # -- data ------------------------------------------------------------------------------

    @shared_pass
    @torch.no_grad()
    def logits(self) -> torch.Tensor:
        """The model's outputs on the whole training set (one pass, kept on the device). The
        same pass records ``penultimate`` where the model has a Linear or 1x1-conv head: most
        data measures need both, and a second pass over the data would cost as much again."""
        try:
            feats, logits = self._outputs_pass()
        except GengapError:  # no head to read features at (raised before the pass): outputs
            pass
        else:
            self.__dict__.setdefault("penultimate", feats)
            return logits
        x, _ = self.require_data()
        return torch.cat(
            [
                self.forward_model(x[i : i + self.batch_size].to(self.device))
                for i in range(0, len(x), self.batch_size)
            ]
        )

    def _outputs_pass(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(penultimate, logits) in one pass over the training set; a planned relative
        flatness rides along where it can (:func:`gengap.measures.flatness.
        relative_flatness_rider`: the pass then runs in its batches), its result in
        :attr:`pass_extras` and its time charged to it."""
        from gengap.measures.features import penultimate_features
        from gengap.measures.flatness import relative_flatness_rider

        x, _ = self.require_data()
        ride = None
        if "relative_flatness" in self.planned:
            try:
                ride = relative_flatness_rider(self)
                if ride is not None:
                    rider, batch = ride
                    out = penultimate_features(self.forward_model, x, self.device, batch,
                                               alongside=rider)
            except Exception:  # noqa: BLE001  the measure, alone, will say what failed
                ride = None
                self.planned = self.planned - {"relative_flatness"}  # and not ride again
        if ride is None:
            return penultimate_features(self.forward_model, x, self.device, self.batch_size)
        charge(self, "relative_flatness", rider.seconds)
        self.pass_extras["relative_flatness"] = rider.value
        return out

    @cached_property
    def margins(self) -> torch.Tensor:
        """f(x)[y] − max_{j≠y} f(x)[j] for every training example."""
        _, y = self.require_data()
        logits = self.logits.double()
        y = y.to(logits.device)
        true = logits.gather(1, y[:, None]).squeeze(1)
        others = logits.scatter(1, y[:, None], float("-inf"))
        return true - others.max(dim=1).values

    @cached_property
    def gamma(self) -> float:
        """γ: the 10th percentile of the margins (the k-th smallest, k = max(1, ⌊m/10⌋)), as an
        absolute value, as in the reference implementation of Dziugaite et al. 2020."""
        k = max(1, len(self.margins) // 10)
        return abs(float(self.margins.kthvalue(k).values))

    @cached_property
    def train_correct(self) -> torch.Tensor:
        """Whether the clean model classifies each training example right (from ``logits``)."""
        _, y = self.require_data()
        return self.logits.argmax(dim=1) == y.to(self.logits.device)

    # -- the rest of Jiang et al.'s catalogue (conv_spectrum.py, perturbation.py) ------------

    def require_trajectory(self) -> dict[str, Any]:
        if self.trajectory is None:
            raise GengapError("this measure needs the training run's records (trajectory)")
        return self.trajectory

    @shared_pass
    def conv_input_sizes(self) -> dict[str, tuple[int, ...]]:
        """Spatial size of each convolution's input, recorded by hooks on one probe input."""
        from gengap.measures.conv_spectrum import conv_input_sizes

        return conv_input_sizes(self.folded, self.input_shape, self.device)

    @shared_pass
    def spectral_norms_fft(self) -> list[float]:
        """‖W‖₂ per layer, of a convolution the norm of the circular stride-1 convolution at
        its input size, by FFT (exact for that operator; an upper bound for a strided one)."""
        from gengap.measures.conv_spectrum import layer_spectral_norms

        return layer_spectral_norms(self.folded, self.conv_input_sizes)

    @shared_pass
    def spectral_norms_op(self) -> list[float]:
        """‖W‖₂ per layer, of a convolution the exact norm of the layer as it acts (its
        padding and stride) at its input size (:mod:`gengap.measures.conv_operator`)."""
        from gengap.measures.conv_operator import operator_conv_norm
        from gengap.measures.conv_spectrum import layer_spectral_norms

        return layer_spectral_norms(self.folded, self.conv_input_sizes, operator_conv_norm)

    @shared_pass
    def distance_spectral_norms(self) -> list[float]:
        """‖W − W⁰‖₂ per layer (reshaped kernels)."""
        return [
            float(torch.linalg.matrix_norm(w - w0, ord=2))
            for w, w0 in zip(self.weights, self.init_weights, strict=True)
        ]

    @shared_pass
    def distance_spectral_norms_fft(self) -> list[float]:
        """‖W − W⁰‖₂ per layer, convolutions by FFT at their input size."""
        from gengap.measures.conv_spectrum import layer_spectral_norms

        return layer_spectral_norms(self.folded, self.conv_input_sizes,
                                    subtract=self.folded_init)

    @shared_pass
    def distance_spectral_norms_op(self) -> list[float]:
        """‖W − W⁰‖₂ per layer, convolutions as they act at their input size."""
        from gengap.measures.conv_operator import operator_conv_norm
        from gengap.measures.conv_spectrum import layer_spectral_norms

        return layer_spectral_norms(self.folded, self.conv_input_sizes, operator_conv_norm,
                                    subtract=self.folded_init)

    @shared_pass
    def flat_net(self) -> Any:
        """The folded model as a function of one flat parameter vector (perturbation.py)."""
        from gengap.measures.perturbation import FlatNet

        return FlatNet(self.folded, self.device, self.monte_carlo_dtype)

    @cached_property
    def monte_carlo_dtype(self) -> torch.dtype | None:
        """The autocast dtype of the σ′/α′ searches and module criticality (``None``: the
        model's own), from ``options.precision`` (:func:`gengap.measures.precision.
        monte_carlo_dtype`)."""
        from gengap.measures.precision import monte_carlo_dtype

        example = self.example_input
        example = example[:1] if example is not None else None
        return monte_carlo_dtype(self.options.precision, self.folded, example, self.device)

    @property
    def monte_carlo_arithmetic(self) -> str:
        """The arithmetic of the Monte Carlo passes by name ("bfloat16", "float32", or the
        model's own dtype where it is not float32): what a stored value of such a measure was
        computed in, or would have been where no pass ran (a search skipped at chance)."""
        own = next((p.dtype for p in self.folded.parameters()), torch.float32)
        return str(self.monte_carlo_dtype or own).removeprefix("torch.")

    def monte_carlo_passes(self) -> torch.dtype | None:
        """:attr:`monte_carlo_dtype`, called where Monte Carlo passes are about to run: it
        records their arithmetic in ``details["monte_carlo_precision"]`` (absent where none
        ran, as when a search is skipped at chance accuracy)."""
        self.details["monte_carlo_precision"] = self.monte_carlo_arithmetic
        return self.monte_carlo_dtype

    @cached_property
    def init_vector(self) -> torch.Tensor:
        """The folded initial model's parameters, flat, in ``flat_net``'s order (float64)."""
        params = [p.detach().reshape(-1) for p in self.folded_init.parameters()]
        return torch.cat(params).double().to(self.device)

    # -- heavy-tailed spectra, features, second model (spectral/, representation.py, ...) ------

    @shared_pass
    def spectra(self) -> Any:
        """Per-layer heavy-tailed spectral table of the folded model (a pandas DataFrame, see
        :func:`gengap.measures.spectral.spectral_table`), with MP fits and randomized ESDs."""
        from gengap.measures.spectral import spectral_table

        return spectral_table(self.folded, seed=self.options.seed, device=self.device)

    @shared_pass
    @torch.no_grad()
    def penultimate(self) -> torch.Tensor:
        """The input of the last Linear/Conv layer on the whole training set (float64, one
        pass; spatial axes averaged for a final 1x1 conv under global average pooling). Fills
        ``logits`` in the same pass when it is not computed yet (and ``logits`` fills it)."""
        feats, logits = self._outputs_pass()
        self.__dict__.setdefault("logits", logits)
        return feats

    @shared_pass
    def hessian_lanczos(self) -> Any:
        """The Lanczos run on the training-loss Hessian (flatness.py), with its Hessian-vector
        product: shared by the Hessian's top eigenvalue and its trace."""
        from gengap.measures.flatness import hessian_lanczos

        return hessian_lanczos(self)

    def require_second(self) -> nn.Module:
        if self.second_model is None:
            raise GengapError("this measure needs a second run that differs only in seed")
        return self.second_model


    # -- the σ′ and α′ searches (pacbayes.py, sharpness.py), each shared by several measures --

    @shared_pass
    def sigma_search(self) -> Any:
        """σ′: the Gaussian-noise search (a :class:`gengap.measures.search.SearchResult`)."""
        from gengap.measures.pacbayes import sigma_search

        return sigma_search(self, magnitude=False)

    @shared_pass
    def mag_sigma_search(self) -> Any:
        """The magnitude-aware σ′ search."""
        from gengap.measures.pacbayes import sigma_search

        return sigma_search(self, magnitude=True)

    @shared_pass
    def alpha_search(self) -> Any:
        """α′: the worst-case (projected gradient ascent) search."""
        from gengap.measures.sharpness import alpha_search

        return alpha_search(self, magnitude=False)

    @shared_pass
    def mag_alpha_search(self) -> Any:
        """The magnitude-aware α′ search."""
        from gengap.measures.sharpness import alpha_search

        return alpha_search(self, magnitude=True)


def _plain(x: torch.Tensor | None) -> torch.Tensor | None:
    return None if x is None else plain_strides(x)
