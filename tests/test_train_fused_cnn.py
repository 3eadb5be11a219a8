"""The compiled training step of Small CNN Zoo populations against torch's autograd."""

from __future__ import annotations

import copy
import os
import shutil
import sys
import warnings

import pytest
import torch
from test_train_population import assert_same
from torch import nn

from gengap import native
from gengap.cli import app as cli
from gengap.data import load
from gengap.models import build
from gengap.specs import ArchSpec, DataSpec, RunSpec, TrainSpec
from gengap.train import fit, fit_population, fused_cnn
from gengap.train import population as population_module
from gengap.train.fused_cnn import FusedSmallCNN, small_cnn_depth, unavailable_reason
from gengap.train.population import Population, population_path

needs_compiler = pytest.mark.skipif(
    not (os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")),
    reason="no C++ compiler",
)
CPU = torch.device("cpu")


def avx512() -> bool:
    lib = native.library("small_cnn")
    return lib is not None and fused_cnn._vectorized(lib)


# populations take the kernel only where it is fast (AVX-512); its arithmetic is tested anywhere
needs_avx512 = pytest.mark.skipif("not avx512()", reason="a build without AVX-512 is not used")


def stacked(models: list[nn.Module]) -> torch.Tensor:
    return torch.stack([torch.cat([p.detach().reshape(-1) for p in m.parameters()])
                        for m in models])


def kernel_for(template: nn.Module) -> FusedSmallCNN:
    """The kernel for ``template``, whether or not this CPU makes it fast."""
    lib = native.library("small_cnn")
    assert lib is not None, unavailable_reason()
    return FusedSmallCNN(lib, small_cnn_depth(template), template[-1].out_features)


@needs_compiler
@pytest.mark.parametrize(
    ("shape", "depth", "classes", "n"),
    [((1, 28, 28), 3, 10, 6),  # the Small CNN Zoo network
     ((3, 9, 11), 2, 3, 5),  # odd sizes: the last row and column of a window are padding
     ((16, 5, 7), 4, 2, 4),  # 16 input channels: the first layer as the later ones
     ((2, 1, 1), 1, 1, 1)],  # one pixel, one class, one example
    ids=["zoo-28x28", "odd-9x11", "cin16-5x7", "one-pixel"],
)
def test_kernel_equals_autograd_in_float64(shape, depth, classes, n):
    torch.manual_seed(0)
    models = [build(ArchSpec(family="cnn", depth=depth), shape, classes) for _ in range(3)]
    x, y = torch.randn(n, *shape), torch.randint(0, classes, (n,))
    kernel = kernel_for(models[0])
    ces, gradient = kernel(stacked(models), x, y)
    logits = kernel.logits(stacked(models), x)
    for row, model in enumerate(models):
        exact = copy.deepcopy(model).double()
        expected_logits = exact(x.double())
        assert torch.allclose(logits[row].double(), expected_logits, rtol=1e-5, atol=1e-6)
        ce = nn.functional.cross_entropy(expected_logits, y, reduction="none")
        ce.mean().backward()
        expected = torch.cat([p.grad.reshape(-1) for p in exact.parameters()])
        assert torch.allclose(ces[row].double(), ce.detach(), rtol=1e-5, atol=1e-6)
        scale = float(expected.abs().max())
        assert float((gradient[row].double() - expected).abs().max()) <= 1e-5 * scale


@needs_compiler
def test_threads_split_networks_with_the_same_result():
    torch.manual_seed(1)
    models = [build(ArchSpec(family="cnn"), (1, 12, 12), 10) for _ in range(5)]
    x, y = torch.randn(7, 1, 12, 12), torch.randint(0, 10, (7,))
    kernel = kernel_for(models[0])
    one, three = kernel(stacked(models), x, y, threads=1), kernel(stacked(models), x, y, threads=3)
    assert torch.equal(one[0], three[0]) and torch.equal(one[1], three[1])


@needs_compiler
def test_nan_weights_give_nan_losses_as_torch():
    """A diverged network's NaN passes the ReLUs, as torch's ReLU lets it."""
    torch.manual_seed(2)
    model = build(ArchSpec(family="cnn", depth=2), (1, 8, 8), 10)
    flat = stacked([model, model])
    flat[0, 0] = float("nan")  # one first-layer weight of the first network
    ces, _ = kernel_for(model)(flat, torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,)))
    assert ces[0].isnan().all() and ces[1].isfinite().all()


@needs_compiler
def test_nan_gradients_pass_relus_as_in_torch():
    """A NaN activation passes its gradient on through the ReLU's backward, as torch's does,
    so a diverged network's gradient has NaN where torch's has."""
    torch.manual_seed(3)
    model = build(ArchSpec(family="cnn", depth=3), (1, 12, 12), 10)
    x, y = torch.randn(3, 1, 12, 12), torch.randint(0, 10, (3,))
    x[1, 0, 5, 6] = float("nan")
    _, gradient = kernel_for(model)(stacked([model]), x, y)
    nn.functional.cross_entropy(model(x), y).backward()
    expected = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    assert expected.isnan().any() and torch.equal(gradient[0].isnan(), expected.isnan())


@needs_compiler
def test_bad_labels_and_sizes_are_refused():
    model = build(ArchSpec(family="cnn", depth=2), (1, 8, 8), 10)
    kernel = kernel_for(model)
    x = torch.randn(2, 1, 8, 8)
    with pytest.raises(ValueError, match="labels outside 0..9"):
        kernel(stacked([model]), x, torch.tensor([0, 10]))
    with pytest.raises(ValueError, match="do not fit"):
        kernel(stacked([model])[:, :-1], x, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="2 examples need as many labels"):
        kernel(stacked([model]), x, torch.tensor([0]))
    with pytest.raises(ValueError, match="empty batch"):
        kernel(stacked([model]), x[:0], torch.tensor([], dtype=torch.int64))
    assert kernel.logits(stacked([model]), x[:0]).shape == (1, 0, 10)
    # float64 rows are read as the float32 they hold, not as raw bytes
    ces, _ = kernel(stacked([model]).double(), x, torch.tensor([0, 1]))
    assert torch.allclose(ces, kernel(stacked([model]), x, torch.tensor([0, 1]))[0])


def test_only_the_small_cnn_zoo_shape_is_taken():
    def cnn(**arch):
        return build(ArchSpec(family="cnn", **arch), (1, 8, 8), 10)

    assert small_cnn_depth(cnn()) == 3 and small_cnn_depth(cnn(depth=5)) == 5
    for other in (cnn(width=8), cnn(batch_norm=True), cnn(activation="gelu"), cnn(dropout=0.5),
                  cnn().double(), build(ArchSpec(family="mlp", width=16), (1, 8, 8), 10),
                  build(ArchSpec(family="nin", width=16, batch_norm=False), (1, 8, 8), 10)):
        assert small_cnn_depth(other) is None
    assert FusedSmallCNN.for_template(cnn(), torch.device("meta")) is None


def test_modules_the_kernel_would_not_run_as_written_are_left_to_torch():
    """Hooks, a forward of a subclass's own, a reparametrized weight, a layer run twice:
    the kernel would compute another network than the module does."""
    def cnn() -> nn.Sequential:
        return build(ArchSpec(family="cnn", depth=2), (1, 8, 8), 10)

    class Doubled(nn.Sequential):
        def forward(self, x):
            return 2 * super().forward(x)

    hooked = cnn()
    hooked[1].register_forward_hook(lambda module, args, out: out * 2)
    pre_hooked = cnn()
    pre_hooked[0].register_forward_pre_hook(lambda module, args: (args[0] + 1,))
    normed = cnn()
    with warnings.catch_warnings():  # the old weight_norm, which torch deprecates, is a hook
        warnings.simplefilter("ignore", FutureWarning)
        nn.utils.weight_norm(normed[2])
    twice = cnn()
    twice[2] = twice[0] = nn.Conv2d(16, 16, 3, stride=2, padding=1)
    for other in (Doubled(*cnn()), hooked, pre_hooked, normed, twice):
        assert small_cnn_depth(other) is None
    handle = nn.modules.module.register_module_forward_hook(lambda m, a, out: out)
    try:
        assert small_cnn_depth(cnn()) is None
    finally:
        handle.remove()
    assert small_cnn_depth(cnn()) == 2


@pytest.fixture(scope="module")
def digits():
    return load(DataSpec(name="digits", train_fraction=0.2))


@needs_compiler
@needs_avx512
@pytest.mark.parametrize(
    ("optimizer", "rates"),
    # Adam turns a diverging member's rounding into steps of lr * g / (|g| + eps): at lr 1e29
    # float rounding of a tiny g moves a weight by 1e24, so the diverging member is SGD's.
    [("sgd", [(0.05, 0.0), (0.1, 1e-3), (1e30, 0.0)]), ("adam", [(0.005, 0.0), (0.01, 1e-3)])],
)
def test_fused_population_equals_training_alone(digits, optimizer, rates):
    """The kernel's population (augmented, a diverging member included) gives each network
    the result of training it alone, as the wide forward does."""
    runs = [RunSpec(arch=ArchSpec(family="cnn"), seed=4, train=TrainSpec(
        optimizer=optimizer, lr=lr, weight_decay=wd, target_ce=0.0, max_epochs=3, flip=True,
        crop=1)) for lr, wd in rates]
    assert Population(runs, digits, CPU).fused is not None
    together = fit_population(runs, digits, device="cpu")
    if optimizer == "sgd":
        assert together[2].status == "failed" and together[2].reason.startswith("diverged")
    for run, result in zip(runs, together, strict=True):
        assert_same(result, fit(run, digits, device="cpu"))


def test_without_the_kernel_the_population_takes_the_wide_forward(digits, monkeypatch):
    monkeypatch.setenv("GENGAP_NATIVE", "0")
    runs = [RunSpec(arch=ArchSpec(family="cnn"), train=TrainSpec(lr=lr)) for lr in (0.1, 0.2)]
    pop = Population(runs, digits, CPU)
    assert pop.fused is None and pop.wide is not None
    assert unavailable_reason() == "turned off by GENGAP_NATIVE=0"
    assert Population(runs, digits, CPU, fused=False).fused is None


@pytest.mark.parametrize("value", ["0", "off", " False "])
def test_native_code_turned_off_by_common_spellings(monkeypatch, value):
    monkeypatch.setenv("GENGAP_NATIVE", value)
    assert native.library("small_cnn") is None
    assert native.why_unavailable("small_cnn") == f"turned off by GENGAP_NATIVE={value}"


@needs_compiler
@needs_avx512
def test_the_path_a_population_takes_is_named(digits, monkeypatch, tmp_path):
    def run(**arch) -> RunSpec:
        return RunSpec(arch=ArchSpec(**arch))

    assert population_path(run(family="cnn"), digits, "cpu") == "compiled kernel"
    assert population_path(run(family="cnn", width=8), digits, "cpu") == "wide forward"
    assert population_path(run(family="resnet", width=2, depth=1), digits, "cpu") == "vmap"
    monkeypatch.setenv("GENGAP_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", shutil.which("false") or "/bin/false")
    native._built.cache_clear()
    try:
        assert population_path(run(family="cnn"), digits, "cpu").startswith(
            "wide forward; the compiled kernel is unavailable: building small_cnn.cpp failed")
        # a population that falls back says so once per process, as a warning
        monkeypatch.setattr(population_module, "_WARNED", [])
        with pytest.warns(RuntimeWarning, match="compiled kernel for Small CNN Zoo populations"):
            assert Population([run(family="cnn")], digits, CPU).fused is None
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert Population([run(family="cnn")], digits, CPU).fused is None
    finally:
        native._built.cache_clear()


@needs_compiler
@needs_avx512
def test_the_auto_probe_names_the_group_and_its_path(tmp_path, monkeypatch, capsys):
    spec = tmp_path / "zoo.toml"
    spec.write_text('name = "k"\nseeds = [0]\n[data]\nname = "digits"\n'
                    'train_fraction = 0.2\n[arch]\nfamily = "cnn"\n'
                    '[train]\nlr = [0.01, 0.05]\nmax_epochs = 1\n')
    monkeypatch.setattr(sys, "argv", ["gengap", "zoo", "train", str(spec), "--out",
                                      str(tmp_path / "zoo"), "--population", "auto",
                                      "--device", "cpu"])
    with pytest.raises(SystemExit) as done:
        cli.main()
        sys.exit(0)
    out = capsys.readouterr().out
    assert done.value.code == 0, out
    assert ("population of 2 cnn networks (width 16, depth 3, relu; compiled kernel): "
            in " ".join(out.split()))


def test_a_build_without_avx512_is_not_used(monkeypatch):
    """Built for narrower vectors the kernel is several times slower than the wide forward:
    such a build is left unused, saying why."""
    class Narrow:
        class small_cnn_vectorized:  # noqa: N801 - stands in for the library's function
            restype = None

            def __new__(cls):
                return 0

    monkeypatch.setattr(fused_cnn, "_SLOW", [])
    monkeypatch.setattr(native, "_REASONS", {})  # no build failure of an earlier test
    monkeypatch.setattr(fused_cnn, "library", lambda name: Narrow())
    monkeypatch.delenv("GENGAP_NATIVE", raising=False)
    model = build(ArchSpec(family="cnn", depth=2), (1, 8, 8), 10)
    assert FusedSmallCNN.for_template(model, CPU) is None
    assert "without AVX-512" in unavailable_reason()
    # a matter of speed, not a fault: populations take the wide forward without a warning
    monkeypatch.setattr(population_module, "_WARNED", [])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert population_module._kernel(model, CPU) == (None, unavailable_reason())


@needs_compiler
def test_inputs_the_kernel_cannot_read_are_refused():
    model = build(ArchSpec(family="cnn", depth=2), (1, 8, 8), 10)
    kernel = kernel_for(model)
    with pytest.raises(ValueError, match="class indices"):
        kernel(stacked([model]), torch.randn(2, 1, 8, 8), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="images"):
        kernel.logits(stacked([model]), torch.randn(2, 1, 0, 8))
    with pytest.raises(ValueError, match="one row per network"):
        kernel.logits(stacked([model])[0], torch.randn(2, 1, 8, 8))
    with pytest.raises(MemoryError):
        kernel._raise_for(-3, stacked([model]), torch.randn(2, 1, 8, 8))


@needs_compiler
@needs_avx512
def test_a_given_micro_batch_keeps_the_wide_forward(digits):
    runs = [RunSpec(arch=ArchSpec(family="cnn"), train=TrainSpec(lr=lr)) for lr in (0.1, 0.2)]
    assert Population(runs, digits, CPU).fused is not None
    assert Population(runs, digits, CPU, micro_batch=8).fused is None


def test_a_failing_build_is_reported_not_raised(monkeypatch, tmp_path):
    """A compiler that fails leaves the torch path, with the reason kept; nothing is
    cached."""
    monkeypatch.setenv("GENGAP_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", shutil.which("false") or "/bin/false")
    native._built.cache_clear()
    try:
        assert native.library("small_cnn") is None
        assert native.why_unavailable("small_cnn").startswith("building small_cnn.cpp failed")
        assert list((tmp_path / "kernels").iterdir()) == []
    finally:
        native._built.cache_clear()


@needs_compiler
def test_a_damaged_build_is_built_again_and_cxx_may_hold_arguments(monkeypatch, tmp_path):
    """A truncated library would crash the loader (SIGBUS): its checksum no longer matches,
    so it is built again before it is loaded."""
    monkeypatch.setenv("GENGAP_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", f"env {shutil.which('c++') or shutil.which('g++')}")
    native._built.cache_clear()
    try:
        assert native.library("small_cnn") is not None
        (built,) = (tmp_path / "kernels").glob("*.so")
        size = built.stat().st_size
        whole = built.read_bytes()
        built.unlink()  # a new file: truncating the loaded one in place would crash this process
        built.write_bytes(whole[: size // 2])
        native._built.cache_clear()
        assert native.library("small_cnn") is not None
        assert built.stat().st_size == size and native._intact(built)
        assert oct(built.stat().st_mode & 0o777) == "0o755"  # others sharing it can load it
    finally:
        native._built.cache_clear()


def test_a_folder_others_can_write_to_is_not_built_in(monkeypatch, tmp_path):
    """With the cache folder unusable, the fallback in the temporary folder must be this
    user's alone: a library others could plant there would run as this user."""
    blocked = tmp_path / "file"
    blocked.write_text("")
    monkeypatch.setenv("GENGAP_CACHE", str(blocked))  # a file: no folder can be made in it
    monkeypatch.setenv("CXX", "true")  # a compiler is found first; none runs
    monkeypatch.setattr(native.tempfile, "tempdir", str(tmp_path))
    shared = tmp_path / f"gengap-kernels-{native.os.getuid()}"
    shared.mkdir()
    shared.chmod(0o777)
    native._built.cache_clear()
    try:
        assert native.library("small_cnn") is None
        assert "no cache folder of this user's own" in native.why_unavailable("small_cnn")
    finally:
        native._built.cache_clear()


@needs_compiler
def test_a_build_is_cached_by_its_inputs(monkeypatch, tmp_path):
    monkeypatch.setenv("GENGAP_CACHE", str(tmp_path))
    native._built.cache_clear()
    try:
        assert native.library("small_cnn") is not None
        built = sorted((tmp_path / "kernels").glob("*.so"))
        assert len(built) == 1 and built[0].name.startswith("small_cnn-")
        native._built.cache_clear()
        stamp = built[0].stat().st_mtime_ns
        assert native.library("small_cnn") is not None  # loaded, not built again
        assert built[0].stat().st_mtime_ns == stamp
    finally:
        native._built.cache_clear()
