"""Rules a GPU would enforce, checked where no GPU is: tensors made on the host meet the
device's (``meta`` stands in for a GPU), TF32 is off where float32 results are compared, and
Ray's tasks get a device the cluster has, named as Ray shows it to them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gengap.measures.gauss_newton_trace as gauss_newton
from gengap.device import ieee_float32
from gengap.errors import GengapError
from gengap.zoo.executors import cluster_device
from gengap.zoo.run import check_options

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


def test_the_exact_traces_cotangents_follow_the_logits_to_their_device(monkeypatch):
    """Autograd wants each output's gradient on that output's device: cotangents drawn on the
    host failed there ("expected device cuda:0 but got cpu"), and the exact Hessian trace fell
    back to its estimate on every GPU."""
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).to("meta")
    # a meta tensor holds no numbers to add up: the layers' norms come back as host zeros
    monkeypatch.setattr(gauss_newton, "_layer_squared_norms", lambda *args: torch.zeros(1))
    on_host = torch.randn(2, 5, 3, dtype=torch.float64)
    assert gauss_newton.squared_gradient_norm_sum(
        net, torch.empty(5, 4, device="meta"), lambda _logits: on_host) == 0.0


def test_ieee_float32_turns_tf32_off_inside_and_restores_it():
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
        with ieee_float32():
            assert not torch.backends.cudnn.allow_tf32
            assert not torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@no_cuda
def test_ray_takes_cuda_by_name_where_this_machine_has_none():
    """The cluster's nodes have the GPUs, not necessarily the machine that sends the tasks."""
    check_options("ray", "off", device="cuda")
    with pytest.raises(GengapError, match="CUDA is not available here"):
        check_options("local", "off", device="cuda")


def test_ray_refuses_a_numbered_gpu():
    """Ray shows each task its one GPU alone, as cuda:0: cuda:1 failed in every task."""
    with pytest.raises(GengapError, match=r"device 'cuda:1' with the ray executor: use auto, "
                                          r"cpu or cuda \(Ray gives each task one GPU"):
        check_options("ray", "off", device="cuda:1")
    with pytest.raises(GengapError, match="unknown device 'gpu'"):
        check_options("ray", "off", device="gpu")


def test_auto_on_ray_is_what_the_cluster_has():
    """auto asked Ray for no GPU, so every task found the node's first GPU by itself."""
    assert cluster_device("auto", "off", {"CPU": 8.0, "GPU": 2.0}) == "cuda"
    assert cluster_device("auto", "off", {"CPU": 8.0}) == "cpu"
    assert cluster_device("cpu", "auto", {"GPU": 2.0}) == "cpu"
    assert cluster_device("cuda", "off", {"GPU": 1.0}) == "cuda"
    with pytest.raises(GengapError, match="--device cuda: the Ray cluster has no GPU"):
        cluster_device("cuda", "off", {"CPU": 8.0})


@no_cuda
def test_population_auto_on_ray_needs_the_clusters_device_here():
    with pytest.raises(GengapError, match="--population auto times each group on this "
                                          "machine, which cannot use the cluster's device "
                                          "'cuda': give --population on or off"):
        cluster_device("auto", "auto", {"GPU": 1.0})

