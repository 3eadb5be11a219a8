"""torch's CPU backward of a 1x1 stride-2 convolution on a channels-last input of few channels
corrupts the heap (see gengap.models.channels_last): the resnet shortcut met it when trained on
cropped 1-channel images and when α′ ascended on its channels-last copy. Run in a child process,
so that a crash is a failed test rather than a dead test session."""

from __future__ import annotations

import subprocess
import sys

import torch
from torch import nn

from gengap.models.channels_last import channels_last_safe
from gengap.train.batches import plain_strides

CHILD = """
import torch
torch.set_num_threads(1)  # as zoo workers: the failure was seen with one thread
from gengap.data import load
from gengap.measures import MeasureContext, compute_timed
from gengap.models import build_for
from gengap.specs import ArchSpec, RunSpec, TrainSpec
from gengap.train import fit

run = RunSpec(arch=ArchSpec(family="resnet", width=4, depth=1),
              train=TrainSpec(lr=0.01, optimizer="adam", max_epochs=12, crop=1))
splits = load(run.data)
for _ in range(3):
    result = fit(run, splits, device="cpu")
model = build_for(run.arch, splits)
model.load_state_dict(result.final_state)
ctx = MeasureContext(model, x_train=splits.x_train, y_train=splits.y_train, device="cpu")
for _ in range(2):
    values = compute_timed(ctx, ["sharpness_alpha", "sharpness_mag_alpha"])
print(result.status, *(round(v, 6) for v, _ in values.values()))
"""


def test_a_resnet_trains_on_cropped_grayscale_and_its_sharpness_is_measured():
    child = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                           timeout=600)
    assert child.returncode == 0, child.stderr[-2000:]
    status, *alphas = child.stdout.split()
    assert status == "done" and all(float(a) > 0 for a in alphas)


def test_plain_strides_restrides_only_what_a_permute_left_channels_last():
    grey = torch.randn(4, 5, 6, 1).permute(0, 3, 1, 2).contiguous()  # a no-op for one channel
    assert grey.stride() == (30, 1, 6, 1)
    fixed = plain_strides(grey)
    assert fixed.stride() == (30, 30, 6, 1) and torch.equal(fixed, grey)
    plain = torch.randn(4, 3, 6, 5)
    assert plain_strides(plain) is plain


def test_only_few_channel_strided_pointwise_convolutions_are_unsafe_in_channels_last():
    assert not channels_last_safe(nn.Sequential(nn.Conv2d(4, 8, 1, stride=2)))
    assert not channels_last_safe(nn.Sequential(nn.Conv2d(16, 8, 1, stride=2, groups=4)))
    assert channels_last_safe(nn.Sequential(nn.Conv2d(8, 8, 1, stride=2)))
    assert channels_last_safe(nn.Sequential(nn.Conv2d(4, 8, 3, stride=2)))
    assert channels_last_safe(nn.Sequential(nn.Conv2d(4, 8, 1, stride=1)))
