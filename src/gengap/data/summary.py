"""What a data set looks like: sizes, shapes, class balance and the majority-class baseline."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gengap.data.splits import Splits


@dataclass(frozen=True)
class DataSummary:
    """Sizes, input shape and kind, class counts per split, and the chance baseline: the
    accuracy of always predicting the training split's most frequent class."""

    n_train: int
    n_test: int
    input_shape: tuple[int, ...]
    kind: str
    dtype: str
    num_classes: int
    vocab_size: int | None
    train_counts: tuple[int, ...]
    test_counts: tuple[int, ...]
    majority_class: int
    majority_train_acc: float
    majority_test_acc: float

    @property
    def test_only_classes(self) -> list[int]:
        """Classes that test examples hold but no training example does: no network trained
        here can learn them."""
        return [c for c, (n, t) in enumerate(zip(self.train_counts, self.test_counts,
                                                  strict=True)) if t and not n]


def summarize(splits: Splits) -> DataSummary:
    """The :class:`DataSummary` of ``splits``."""
    k = splits.num_classes
    train = np.bincount(splits.y_train.numpy(), minlength=k)
    test = np.bincount(splits.y_test.numpy(), minlength=k)
    majority = int(train.argmax())
    return DataSummary(
        n_train=len(splits.y_train),
        n_test=len(splits.y_test),
        input_shape=splits.input_shape,
        kind=splits.kind,
        dtype=str(splits.x_train.dtype).removeprefix("torch."),
        num_classes=k,
        vocab_size=splits.vocab_size,
        train_counts=tuple(int(c) for c in train),
        test_counts=tuple(int(c) for c in test),
        majority_class=majority,
        majority_train_acc=float(train[majority] / max(train.sum(), 1)),
        majority_test_acc=float(test[majority] / max(test.sum(), 1)),
    )
