"""The context's shared passes over the training data: the outputs and the penultimate
features come from one pass."""

from __future__ import annotations

import torch
from torch import nn

from gengap.measures import MeasureContext, available, compute


def counted(model: nn.Module) -> list[int]:
    """The batch size of each forward call (copies of ``model`` keep the hook)."""
    calls: list[int] = []
    model.register_forward_hook(lambda _m, inputs, _o: calls.append(len(inputs[0])))
    return calls


def test_the_logits_pass_also_records_the_penultimate_features() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 4))
    x, y = torch.randn(50, 3), torch.randint(0, 4, (50,))
    calls = counted(net)
    ctx = MeasureContext(net, x_train=x, y_train=y, device="cpu", batch_size=16)
    logits = ctx.logits
    # the context's check of two examples; one shows which layer runs last; then the 50
    assert calls == [2, 1, 16, 16, 16, 2]
    feats = ctx.penultimate
    assert len(calls) == 6  # no second pass
    with torch.no_grad():
        torch.testing.assert_close(logits, net(x))
        torch.testing.assert_close(feats, net[:2](x).double())


class HeadFirst(nn.Module):
    """A model that registers its classifier before its feature layers."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(6, 4)
        self.features = nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 6), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def test_the_head_is_the_layer_that_runs_last_not_the_last_registered() -> None:
    torch.manual_seed(0)
    net = HeadFirst()
    x, y = torch.randn(20, 3), torch.randint(0, 4, (20,))
    ctx = MeasureContext(net, x_train=x, y_train=y, device="cpu")
    with torch.no_grad():
        torch.testing.assert_close(ctx.penultimate, net.features(x).double())
    from gengap.measures.features import head_matrix

    assert torch.equal(head_matrix(net, x[:1]), net.head.weight.detach())


def test_a_model_without_a_linear_head_still_has_its_logits() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    x, y = torch.randn(10, 1, 6, 6), torch.randint(0, 3, (10,))
    ctx = MeasureContext(net, x_train=x, y_train=y, device="cpu")
    with torch.no_grad():
        torch.testing.assert_close(ctx.logits, net(x))


def test_a_cpu_context_asks_glibc_to_keep_large_freed_blocks(monkeypatch) -> None:
    """Large batches freed and mapped afresh cost page faults: the first CPU context turns
    glibc's return of large blocks off, once per process."""
    import ctypes
    import sys

    import gengap.memory_reuse as memory_reuse

    asked: list[tuple[int, int]] = []

    class FakeLibc:
        def mallopt(self, param: int, value: int) -> int:
            asked.append((param, value))
            return 1

    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(memory_reuse, "_REUSING", False)
    monkeypatch.setattr(ctypes, "CDLL", lambda _name: FakeLibc())
    net = nn.Sequential(nn.Linear(3, 4))
    MeasureContext(net, device="cpu")
    MeasureContext(net, device="cpu")
    assert sorted(asked) == [(memory_reuse.M_MMAP_THRESHOLD, 1 << 30),
                             (memory_reuse.M_TRIM_THRESHOLD, (1 << 31) - 1)]


def test_available_lists_only_what_compute_can_give_without_data():
    """Without data or an input shape, BatchNorm cannot be folded and the FFT/operator norms
    and path_norm have no input size: available() used to list them, and compute(ctx) then
    failed on the first."""
    bn = nn.Sequential(nn.Linear(20, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 3))
    assert available(MeasureContext(bn)) == ["params", "vc_dim"]
    assert "path_norm" in available(MeasureContext(bn, input_shape=(20,)))
    conv = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 3))
    without = compute(MeasureContext(conv))  # every listed measure, none failing
    assert {n.split(".")[0] for n in without} == set(available(MeasureContext(conv)))
    assert "prod_of_spec" in without
    assert not {n for n in without if n.endswith(("_fft", "_op")) or n == "path_norm"}
    shaped = available(MeasureContext(conv, input_shape=(1, 8, 8)))
    assert {"path_norm", "prod_of_spec_fft", "sum_of_spec_op"} <= set(shaped)
