"""Why a measure has no value: a NaN from a formula that does not apply carries its reason to
the user (σ′ and α′ of a network at chance, augmentations of vector inputs), per run of a zoo
and for one network."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from typer.testing import CliRunner

from gengap.cli.app import app
from gengap.measures import MeasureContext, compute
from gengap.zoo import load_zoo_spec, measure_zoo, train_zoo

AT_CHANCE = ("training accuracy minus chance (1/classes) is below the target drop 0.1: no "
             "perturbation lowers it that much")


def chance_zoo(folder: Path):
    """Two MLPs barely trained (learning rates 1e-6 and 2e-6, one epoch): at chance."""
    spec = folder / "chance.toml"
    spec.write_text('name = "chance"\n[data]\nname = "digits"\ntrain_fraction = 0.2\n'
                    '[arch]\nfamily = "mlp"\nwidth = 4\ndepth = 1\n'
                    '[train]\nmax_epochs = 1\nlr = [1e-6, 2e-6]\n')
    return train_zoo(load_zoo_spec(spec), folder / "zoo", device="cpu")


def test_a_zoo_at_chance_says_why_its_searches_have_no_value(tmp_path) -> None:
    # they were NaN without a word; the bounds built on σ′ and α′ too
    store = chance_zoo(tmp_path)
    assert (store.frame()["train_acc"] < 0.2).all()  # what makes σ′ unreachable
    no_value: dict[str, dict[str, int]] = {}
    measure_zoo(store, "pacbayes_sigma,sharpness_init,margin", device="cpu",
                no_value=no_value)
    assert no_value == {"pacbayes_sigma": {AT_CHANCE: 2}, "sharpness_init": {AT_CHANCE: 2}}
    shown = CliRunner().invoke(app, ["measure", str(tmp_path / "zoo"), "--measures",
                                     "pacbayes_sigma,pacbayes_flatness", "--recompute",
                                     "--device", "cpu"])
    assert shown.exit_code == 0, shown.output
    printed = " ".join(shown.output.split())  # the console wraps long lines
    assert f"no value (NaN) on 2 runs: pacbayes_sigma, pacbayes_flatness ({AT_CHANCE})" in printed


def test_one_network_records_why_a_measure_does_not_apply() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    x, y = torch.randn(40, 6), torch.randint(0, 3, (40,))
    ctx = MeasureContext(net, x_train=x, y_train=y, device="cpu")
    values = compute(ctx, ["augmentation_penalty", "params"])
    assert values["augmentation_penalty"] != values["augmentation_penalty"]  # NaN
    assert ctx.no_value == {"augmentation_penalty": "augmentation_penalty needs image inputs "
                            "(N, C, H, W)"}


def test_a_measure_built_on_one_without_a_value_gets_its_reason() -> None:
    # db_mixup is NaN because davies_bouldin and mixup_accuracy have no value here: the
    # reason went to those two (not asked for) and db_mixup had none
    from gengap.measures import profile

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    x, y = torch.randn(3, 6), torch.tensor([0, 1, 2])  # every class seen once
    ctx = MeasureContext(net, x_train=x, y_train=y, device="cpu")
    values = compute(ctx, ["db_mixup"])
    assert values["db_mixup"] != values["db_mixup"]  # NaN
    assert ctx.no_value["db_mixup"] == ctx.no_value["davies_bouldin"]
    ctx = MeasureContext(net, x_train=x, y_train=y, device="cpu")
    assert set(profile(ctx, ["db_mixup"]).no_value) == {"db_mixup"}  # only what was asked
