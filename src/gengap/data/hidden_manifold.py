"""The hidden manifold model (Goldt, Mézard, Krzakala & Zdeborová 2020): inputs
x = f(F c / √D) in R^N with a fixed Gaussian feature matrix F (N×D) and a latent c ~ N(0, I_D);
labels from a random two-layer teacher acting on the latent c (or on x). For classification
the teacher has one output per class and the label is its argmax. Inputs (N_examples, N)
float32."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from gengap.data.randomize import knob_rng
from gengap.data.sources import RawSplits, SourceOptions, register_source
from gengap.data.teacher import ACTIVATIONS, balanced_sample, random_teacher
from gengap.specs import DataSpec

Activation = Literal["sign", "erf", "relu", "tanh", "linear"]


class HiddenManifoldOptions(SourceOptions):
    input_dim: int = Field(500, ge=1, description="N, the dimension of the inputs")
    latent_dim: int = Field(10, ge=1, description="D, the dimension of the hidden manifold")
    activation: Activation = Field("sign", description="f, applied to F c / √D")
    num_classes: int = Field(2, ge=2, description="classes (teacher outputs)")
    teacher_hidden: int = Field(100, ge=1, description="M, hidden units of the teacher")
    teacher_activation: Activation = Field("erf", description="g, the teacher's activation")
    teacher_on: Literal["latent", "input"] = Field(
        "latent", description="the teacher reads the latent c (the model's point) or x"
    )
    balanced: bool = Field(True, description="equal class counts, by rejection sampling")
    n_train: int = Field(4000, ge=1, description="training examples")
    n_test: int = Field(1000, ge=1, description="test examples")


@register_source(
    "hidden-manifold", "hidden manifold model: x = f(F c / √D), labels from a teacher on c",
    options=HiddenManifoldOptions,
)
def make_hidden_manifold(
    spec: DataSpec, options: HiddenManifoldOptions, data_dir: Path | None
) -> RawSplits:
    o = options
    features = knob_rng(spec.seed, "hidden-manifold/features").standard_normal(
        (o.input_dim, o.latent_dim)
    )
    teacher = random_teacher(
        knob_rng(spec.seed, "hidden-manifold/teacher"),
        o.latent_dim if o.teacher_on == "latent" else o.input_dim,
        o.teacher_hidden, 1, o.num_classes, o.teacher_activation,
    )
    f = ACTIVATIONS[o.activation]
    out = []
    for stream, n in (("train", o.n_train), ("test", o.n_test)):
        rng = knob_rng(spec.seed, f"hidden-manifold/{stream}")

        def draw(batch: int, rng: np.random.Generator = rng) -> tuple[np.ndarray, np.ndarray]:
            c = rng.standard_normal((batch, o.latent_dim))
            x = f(c @ features.T / np.sqrt(o.latent_dim))
            return x, teacher.labels(c if o.teacher_on == "latent" else x)

        if o.balanced:
            x, y = balanced_sample(draw, n, o.num_classes, rng, "hidden-manifold")
        else:
            x, y = draw(n)
        out += [x.astype(np.float32), y]
    return RawSplits(*out, num_classes=o.num_classes)
