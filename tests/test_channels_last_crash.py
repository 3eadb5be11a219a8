"""torch's CPU backward of a 1x1 stride-2 convolution on a channels-last input of few channels
corrupts the heap (see gengap.models.channels_last): the resnet shortcut met it when trained on
cropped 1-channel images and when α′ ascended on its channels-last copy. Run in a child process,
so that a crash is a failed test rather than a dead test session."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gengap.data import Splits
from gengap.data.splits import plain_strides
from gengap.interop.pgdl import load_task
from gengap.interop.pgdl.tfrecord import build_example, serialize_tensor, write_records
from gengap.measures import MeasureContext
from gengap.models.channels_last import channels_last_safe

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


# the Hessian's double backward through a width-4 resnet's 1x1 stride-2 shortcut, on 1-channel
# inputs laid out as an (N, H, W, 1) file gives them: "corrupted size vs. prev_size" before the
# measure context re-strided its data
MEASURED_ON_FILE_LAYOUT = """
import numpy as np
import torch
torch.set_num_threads(1)
from gengap.data import load
from gengap.measures import MeasureContext, compute_timed
from gengap.models import build_for
from gengap.specs import ArchSpec, RunSpec

run = RunSpec(arch=ArchSpec(family="resnet", width=4, depth=1))
splits = load(run.data)
model = build_for(run.arch, splits)
as_file = splits.x_train.numpy().transpose(0, 2, 3, 1).copy()  # (N, H, W, 1)
x = torch.from_numpy(np.ascontiguousarray(as_file.transpose(0, 3, 1, 2)))
assert x.stride()[1] == 1  # channels-last strides that pass is_contiguous()
ctx = MeasureContext(model, x_train=x, y_train=splits.y_train, device="cpu")
for _ in range(3):
    values = compute_timed(ctx, ["hessian_top_eigenvalue"])
print(*(v for v, _ in values.values()))
"""


def test_the_hessian_of_a_resnet_is_measured_on_inputs_in_file_layout():
    child = subprocess.run([sys.executable, "-c", MEASURED_ON_FILE_LAYOUT], capture_output=True,
                           text=True, timeout=600)
    assert child.returncode == 0, child.stderr[-2000:]
    assert float(child.stdout) > 0


def _file_layout_grey(n: int = 4) -> torch.Tensor:
    """A 1-channel batch as an (N, H, W, 1) array transposed to (N, C, H, W) gives it."""
    as_file = np.random.default_rng(0).normal(size=(n, 5, 6, 1)).astype(np.float32)
    x = torch.from_numpy(np.ascontiguousarray(as_file.transpose(0, 3, 1, 2)))
    assert x.stride() == (30, 1, 6, 1) and x.is_contiguous()
    return x


def test_splits_and_the_measure_context_hold_plain_strides():
    grey, labels = _file_layout_grey(), torch.zeros(4, dtype=torch.int64)
    splits = Splits(grey, labels, grey, labels, num_classes=2)
    ctx = MeasureContext(nn.Flatten(), x_train=grey, y_train=labels, x_heldout=grey)
    for x in (splits.x_train, splits.x_test, ctx.x_train, ctx.x_heldout):
        assert x.stride() == (30, 30, 6, 1) and torch.equal(x, grey)


def test_a_pgdl_task_of_grey_images_loads_with_plain_strides(tmp_path: Path):
    (tmp_path / "model_1").mkdir()
    folder = tmp_path / "dataset_1" / "train"
    folder.mkdir(parents=True)
    grey = _file_layout_grey()
    write_records(folder / "shard_0.tfrecord", [
        build_example({"inputs": serialize_tensor(image.permute(1, 2, 0).numpy()),
                       "output": serialize_tensor(np.asarray(0, dtype=np.int32))})
        for image in grey
    ])
    x, _ = load_task(tmp_path).train_data
    assert x.stride() == (30, 30, 6, 1) and torch.equal(x, grey)


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
