"""The MLP on token tasks: inputs enter one-hot encoded."""

import torch

from gengap.data import load
from gengap.models import build_for
from gengap.specs import ArchSpec, DataSpec, RunSpec, TrainSpec
from gengap.train import fit


def test_mlp_one_hot_encodes_tokens():
    net = build_for(ArchSpec(family="mlp", width=8, depth=1),
                    type("S", (), {"input_shape": (3,), "num_classes": 5, "vocab_size": 4})())
    tokens = torch.tensor([[0, 1, 3], [2, 2, 0]])
    first = net[2]  # OneHot, Flatten, then the first Linear
    assert first.in_features == 12
    expected = first(torch.nn.functional.one_hot(tokens, 4).float().reshape(2, 12))
    assert torch.equal(net[:3](tokens), expected)


def test_mlp_learns_a_pvr_task():
    run = RunSpec(
        data=DataSpec(name="pvr-vector", options={"window": 1}, train_size=2000),
        arch=ArchSpec(family="mlp", width=128, depth=2),
        train=TrainSpec(optimizer="adam", lr=3e-3, max_epochs=15, batch_size=64),
    )
    splits = load(run.data)
    result = fit(run, splits, device="cpu")
    assert result.status == "done"
    assert result.metrics["train_acc"] > 0.5  # chance is about 0.1
