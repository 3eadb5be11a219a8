"""Teacher-student data: Gaussian inputs x ~ N(0, I) labelled by the argmax of a random
fully connected teacher network of chosen width, depth and activation. Inputs (N, D)
float32."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from gengap.data.randomize import knob_rng
from gengap.data.sources import RawSplits, SourceOptions, register_source
from gengap.data.teacher import balanced_sample, random_teacher
from gengap.specs import DataSpec


class TeacherStudentOptions(SourceOptions):
    input_dim: int = Field(20, ge=1, description="dimension of the Gaussian inputs")
    teacher_width: int = Field(32, ge=1, description="hidden units per teacher layer")
    teacher_depth: int = Field(2, ge=0, description="hidden layers of the teacher (0: linear)")
    teacher_activation: Literal["relu", "tanh", "erf", "sign", "linear"] = Field(
        "tanh", description="hidden activation (relu teachers without biases favour a few classes)"
    )
    num_classes: int = Field(2, ge=2, description="classes (teacher outputs)")
    balanced: bool = Field(True, description="equal class counts, by rejection sampling")
    n_train: int = Field(4000, ge=1, description="training examples")
    n_test: int = Field(1000, ge=1, description="test examples")


@register_source(
    "teacher-student", "Gaussian inputs labelled by a random teacher network",
    options=TeacherStudentOptions,
)
def make_teacher_student(
    spec: DataSpec, options: TeacherStudentOptions, data_dir: Path | None
) -> RawSplits:
    o = options
    teacher = random_teacher(
        knob_rng(spec.seed, "teacher-student/teacher"), o.input_dim, o.teacher_width,
        o.teacher_depth, o.num_classes, o.teacher_activation,
    )
    out = []
    for stream, n in (("train", o.n_train), ("test", o.n_test)):
        rng = knob_rng(spec.seed, f"teacher-student/{stream}")

        def draw(batch: int, rng: np.random.Generator = rng) -> tuple[np.ndarray, np.ndarray]:
            x = rng.standard_normal((batch, o.input_dim))
            return x, teacher.labels(x)

        if o.balanced:
            x, y = balanced_sample(draw, n, o.num_classes, rng, "teacher-student")
        else:
            x, y = draw(n)
        out += [x.astype(np.float32), y]
    return RawSplits(*out, num_classes=o.num_classes)
