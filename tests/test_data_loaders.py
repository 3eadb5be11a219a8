"""Local-file loaders: each reads back the small files its test writes in the distribution's
own format, and a missing or broken file is a one-line error naming it."""

from __future__ import annotations

import gzip
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from gengap.data import load
from gengap.errors import GengapError
from gengap.specs import DataSpec

RNG = np.random.default_rng(0)


def write_idx(path: Path, array: np.ndarray, zipped: bool) -> None:
    """IDX: magic 0x0000 0x08 ndim, big-endian uint32 sizes, then unsigned bytes."""
    payload = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    payload += struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()
    if zipped:
        path = path.with_name(path.name + ".gz")
        payload = gzip.compress(payload)
    path.write_bytes(payload)


def write_mnist_like(folder: Path, zipped: bool, n_train: int = 30, n_test: int = 12) -> dict:
    folder.mkdir(parents=True)
    arrays = {
        "train-images-idx3-ubyte": RNG.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": RNG.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) * 3) % 10,
    }
    for name, array in arrays.items():
        write_idx(folder / name, array, zipped)
    return arrays


def raw(name: str, data_dir: Path, **options: object) -> torch.Tensor:
    return load(DataSpec(name=name, normalize=False, options=options), data_dir)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
@pytest.mark.parametrize("zipped", [True, False])
def test_idx_loaders_round_trip(tmp_path: Path, name: str, zipped: bool) -> None:
    arrays = write_mnist_like(tmp_path / name, zipped)
    s = raw(name, tmp_path)
    assert s.x_train.shape == (30, 1, 28, 28) and s.x_test.shape == (12, 1, 28, 28)
    assert np.allclose(s.x_train[:, 0].numpy() * 255, arrays["train-images-idx3-ubyte"])
    assert np.allclose(s.x_test[:, 0].numpy() * 255, arrays["t10k-images-idx3-ubyte"])
    assert s.y_train.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert s.y_test.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    assert s.num_classes == 10


def test_missing_data_dir_and_missing_file_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(GengapError, match=r"--data-dir DIR or set GENGAP_DATA \(expects DIR/mnist"):
        load(DataSpec(name="mnist"), None)
    write_mnist_like(tmp_path / "mnist", zipped=True)
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(GengapError) as err:
        load(DataSpec(name="mnist"), tmp_path)
    expected = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    assert str(err.value) == (
        f"mnist: expected file {expected} (or t10k-labels-idx1-ubyte): not found"
    )
    with pytest.raises(GengapError, match="cifar-10-batches-bin/data_batch_1.bin"):
        load(DataSpec(name="cifar10"), tmp_path)
    with pytest.raises(GengapError, match="svhn/train_32x32.mat"):
        load(DataSpec(name="svhn"), tmp_path)


def test_data_dir_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_mnist_like(tmp_path / "mnist", zipped=False)
    monkeypatch.setenv("GENGAP_DATA", str(tmp_path))
    assert load(DataSpec(name="mnist")).x_train.shape[0] == 30


def test_truncated_or_foreign_idx_files_are_refused(tmp_path: Path) -> None:
    write_mnist_like(tmp_path / "mnist", zipped=False)
    images = tmp_path / "mnist" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-5])
    with pytest.raises(GengapError, match="IDX header promises 23520 bytes .* holds 23515"):
        load(DataSpec(name="mnist"), tmp_path)
    images.write_bytes(b"PK\x03\x04 not an idx file")
    with pytest.raises(GengapError, match="not an IDX file"):
        load(DataSpec(name="mnist"), tmp_path)
    images.write_bytes(gzip.compress(b"\x00" * 100)[:-8])
    with pytest.raises(GengapError, match="corrupt or truncated gzip"):
        load(DataSpec(name="mnist"), tmp_path)


def test_test_images_of_another_size_than_the_training_ones_are_refused(tmp_path: Path):
    """They loaded, and the first evaluation failed with a matrix-shape error."""
    write_mnist_like(tmp_path / "mnist", zipped=False)
    write_idx(tmp_path / "mnist" / "t10k-images-idx3-ubyte",
              np.zeros((12, 14, 14), dtype=np.uint8), zipped=False)
    with pytest.raises(GengapError, match="t10k-images-idx3-ubyte: images of 14x14, the "
                                          "training images are 28x28"):
        load(DataSpec(name="mnist"), tmp_path)


def cifar_records(labels: list[np.ndarray], images: np.ndarray) -> bytes:
    """Records of label bytes then 3,072 pixel bytes (R, G, B planes, rows of 32)."""
    columns = [np.asarray(lab, dtype=np.uint8)[:, None] for lab in labels]
    return np.concatenate([*columns, images.reshape(len(images), -1)], axis=1).tobytes()


def test_cifar10_round_trip(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    train_images, train_labels = [], []
    for i in range(1, 6):
        images = RNG.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
        labels = RNG.integers(0, 10, 4)
        (folder / f"data_batch_{i}.bin").write_bytes(cifar_records([labels], images))
        train_images.append(images)
        train_labels += labels.tolist()
    test_images = RNG.integers(0, 256, (3, 3, 32, 32), dtype=np.uint8)
    (folder / "test_batch.bin").write_bytes(cifar_records([np.array([9, 0, 4])], test_images))
    s = raw("cifar10", tmp_path)
    assert s.x_train.shape == (20, 3, 32, 32)
    assert np.allclose(s.x_train.numpy() * 255, np.concatenate(train_images), atol=1e-3)
    assert s.y_train.tolist() == train_labels and s.y_test.tolist() == [9, 0, 4]
    assert np.allclose(s.x_test.numpy() * 255, test_images, atol=1e-3)
    # the first 1,024 pixel bytes of a record are the red plane, row by row
    red = np.zeros((1, 3, 32, 32), dtype=np.uint8)
    red.reshape(1, -1)[0, :1024] = 255
    red.reshape(1, -1)[0, 5] = 7  # row 0, column 5
    (folder / "test_batch.bin").write_bytes(cifar_records([np.array([3])], red))
    s = raw("cifar10", tmp_path)
    assert torch.all(s.x_test[0, 1:] == 0) and s.x_test[0, 0, 0, 5] * 255 == pytest.approx(7)
    assert torch.all(s.x_test[0, 0, 1:] == 1)
    (folder / "test_batch.bin").write_bytes(cifar_records([np.array([1])], test_images[:1])[:-1])
    with pytest.raises(GengapError, match="not a whole number of 3073-byte CIFAR records"):
        raw("cifar10", tmp_path)


@pytest.mark.parametrize(("labels", "column", "classes"), [("fine", 1, 100), ("coarse", 0, 20)])
def test_cifar100_round_trip(tmp_path: Path, labels: str, column: int, classes: int) -> None:
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    written = {}
    for name, n in (("train.bin", 6), ("test.bin", 4)):
        images = RNG.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        coarse, fine = RNG.integers(0, 20, n), RNG.integers(0, 100, n)
        (folder / name).write_bytes(cifar_records([coarse, fine], images))
        written[name] = (images, (coarse, fine)[column])
    s = raw("cifar100", tmp_path, labels=labels)
    assert s.num_classes == classes
    assert np.allclose(s.x_train.numpy() * 255, written["train.bin"][0], atol=1e-3)
    assert s.y_train.tolist() == written["train.bin"][1].tolist()
    assert s.y_test.tolist() == written["test.bin"][1].tolist()


def write_svhn(path: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    images = RNG.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    digits = np.arange(n) % 10
    stored = np.where(digits == 0, 10, digits)  # SVHN writes the digit 0 as label 10
    scipy.io.savemat(path, {"X": images.transpose(2, 3, 1, 0), "y": stored[:, None]})
    return images, digits


@pytest.mark.parametrize("extra", [False, True])
def test_svhn_round_trip(tmp_path: Path, extra: bool) -> None:
    (tmp_path / "svhn").mkdir()
    train = write_svhn(tmp_path / "svhn" / "train_32x32.mat", 12)
    test = write_svhn(tmp_path / "svhn" / "test_32x32.mat", 5)
    more = write_svhn(tmp_path / "svhn" / "extra_32x32.mat", 7)
    s = raw("svhn", tmp_path, extra=extra)
    expected_x = np.concatenate([train[0], more[0]]) if extra else train[0]
    expected_y = np.concatenate([train[1], more[1]]) if extra else train[1]
    assert np.allclose(s.x_train.numpy() * 255, expected_x, atol=1e-3)
    assert s.y_train.tolist() == expected_y.tolist() and 0 in s.y_train.tolist()
    assert np.allclose(s.x_test.numpy() * 255, test[0], atol=1e-3)
    assert s.y_test.tolist() == test[1].tolist()
    (tmp_path / "svhn" / "test_32x32.mat").write_bytes(b"not a mat file at all")
    with pytest.raises(GengapError, match="test_32x32.mat: not a readable MATLAB .mat file"):
        raw("svhn", tmp_path)


def test_svhn_images_of_another_type_are_refused_not_left_unscaled(tmp_path: Path) -> None:
    """SVHN kept MNIST's old rule: anything but bytes was passed through unscaled."""
    (tmp_path / "svhn").mkdir()
    write_svhn(tmp_path / "svhn" / "test_32x32.mat", 5)
    path = tmp_path / "svhn" / "train_32x32.mat"
    images, _ = write_svhn(path, 12)
    y = scipy.io.loadmat(path)["y"]
    for stored, problem in ((images.astype(np.int16), "images of type int16"),
                            (images.astype(np.float64), "float images from 0 to 255")):
        scipy.io.savemat(path, {"X": stored.transpose(2, 3, 1, 0), "y": y})
        with pytest.raises(GengapError, match=problem):
            raw("svhn", tmp_path)
    scipy.io.savemat(path, {"X": (images / 255.0).transpose(2, 3, 1, 0), "y": y})
    assert np.allclose(raw("svhn", tmp_path).x_train.numpy() * 255, images, atol=1e-3)


def test_npz_with_test_arrays_round_trips(tmp_path: Path) -> None:
    x, x_test = RNG.random((15, 6)), RNG.random((5, 6))
    y, y_test = np.arange(15) % 3, np.array([2, 1, 0, 0, 1])
    np.savez(tmp_path / "mine.npz", x=x, y=y, x_test=x_test, y_test=y_test)
    s = raw("npz", tmp_path, file="mine.npz")
    assert np.allclose(s.x_train.numpy(), x) and np.allclose(s.x_test.numpy(), x_test)
    assert s.y_train.tolist() == y.tolist() and s.y_test.tolist() == y_test.tolist()
    assert s.num_classes == 3 and s.x_train.dtype == torch.float32


def test_npz_without_test_arrays_is_split_by_test_fraction(tmp_path: Path) -> None:
    x = np.arange(40 * 2).reshape(40, 2).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(40) % 4)
    s = load(DataSpec(name="npz", normalize=False, test_fraction=0.25,
                      options={"file": str(tmp_path / "d.npz")}))
    assert len(s.y_train) == 30 and len(s.y_test) == 10
    together = torch.cat([s.x_train, s.x_test])[:, 0].sort().values
    assert torch.equal(together, torch.from_numpy(x[:, 0]))  # a partition, nothing lost
    assert set(np.bincount(s.y_test.numpy(), minlength=4).tolist()) <= {2, 3}  # stratified


def test_npz_tokens(tmp_path: Path) -> None:
    x = RNG.integers(0, 7, (12, 5))
    np.savez(tmp_path / "t.npz", x=x, y=np.arange(12) % 2, x_test=x[:3], y_test=np.zeros(3, int))
    s = raw("npz", tmp_path, file="t.npz", tokens=True)
    assert s.x_train.dtype == torch.int64 and torch.equal(s.x_train, torch.from_numpy(x))
    assert s.vocab_size == int(x.max()) + 1 and s.kind == "tokens"


def test_npz_problems_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(GengapError, match=r"npz: expected file .*absent.npz: not found"):
        raw("npz", tmp_path, file="absent.npz")
    np.savez(tmp_path / "a.npz", x=np.zeros((3, 2)), labels=np.zeros(3, int))
    with pytest.raises(GengapError, match=r"a.npz: missing array 'y' \(has: labels, x\)"):
        raw("npz", tmp_path, file="a.npz")
    np.savez(tmp_path / "b.npz", x=np.array([{"a": 1}, None], dtype=object), y=np.zeros(2, int))
    with pytest.raises(GengapError, match="b.npz: unreadable array"):
        raw("npz", tmp_path, file="b.npz")
    np.savez(tmp_path / "c.npz", x=np.zeros((3, 2)), y=np.array([0.5, 1, 2]))
    with pytest.raises(GengapError, match="c.npz: y: labels must be whole numbers 0..99999, "
                       "found 0.5"):
        raw("npz", tmp_path, file="c.npz")
    np.savez(tmp_path / "c.npz", x=np.zeros((3, 2)), y=np.array([-1, 1, 2]))
    with pytest.raises(GengapError, match="c.npz: y must hold integer class labels 0..C-1"):
        raw("npz", tmp_path, file="c.npz")
    # whole numbers stored as floats are labels (they were refused, unlike .mat and IDX)
    np.savez(tmp_path / "c.npz", x=np.zeros((3, 2)), y=np.array([0.0, 1.0, 2.0]),
             x_test=np.zeros((1, 2)), y_test=np.array([2.0]))
    labels = raw("npz", tmp_path, file="c.npz").y_train
    assert labels.dtype == torch.int64 and sorted(labels.tolist()) == [0, 1, 2]
    (tmp_path / "d.npz").write_bytes(b"garbage")
    with pytest.raises(GengapError, match="d.npz: not a readable .npz file"):
        raw("npz", tmp_path, file="d.npz")
    with zipfile.ZipFile(tmp_path / "e.npz", "w") as archive:  # a member that is not .npy
        archive.writestr("x.npy", b"not an array")
        archive.writestr("y.npy", b"nor this")
    with pytest.raises(GengapError, match="e.npz: member 'x' is not a .npy array"):
        raw("npz", tmp_path, file="e.npz")
    np.savez(tmp_path / "f.npz", x=np.zeros((3, 2)), y=np.array([0, 1, 30_000_000]))
    with pytest.raises(GengapError, match="f.npz: label 30000000 is not a class index"):
        raw("npz", tmp_path, file="f.npz")


def test_pvr_visual_from_local_mnist(tmp_path: Path) -> None:
    arrays = write_mnist_like(tmp_path / "mnist", zipped=True, n_train=60, n_test=20)
    s = load(DataSpec(name="pvr-visual", normalize=False,
                      options={"digits_from": "mnist", "n_train": 40, "n_test": 10}), tmp_path)
    assert s.input_shape == (1, 56, 56)
    lookup = {
        (img / 255.0).astype(np.float32).tobytes(): int(lab)
        for img, lab in zip(arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"],
                            strict=True)
    }
    for grid, label in zip(s.x_train[:, 0].numpy(), s.y_train.tolist(), strict=True):
        cells = [lookup[q.tobytes()] for q in
                 (grid[:28, :28], grid[:28, 28:], grid[28:, :28], grid[28:, 28:])]
        pointed = 1 if cells[0] <= 3 else 2 if cells[0] <= 6 else 3
        assert cells[pointed] == label


def test_pvr_visual_refuses_mnist_files_without_every_digit(tmp_path: Path) -> None:
    """A test split of nine digits: one line naming the folder, not numpy's ``high <= 0``."""
    write_mnist_like(tmp_path / "mnist", zipped=False, n_train=30, n_test=9)
    with pytest.raises(GengapError, match=r"mnist: the test split has no image of digit 7, "
                                          "and pvr-visual's grids draw every digit"):
        load(DataSpec(name="pvr-visual", options={"digits_from": "mnist", "n_train": 4,
                                                   "n_test": 4}), tmp_path)


def write_typed_idx(path: Path, array: np.ndarray, code: int, dtype: str) -> None:
    """IDX with element type ``code`` (0x0D float32, 0x0E float64), big-endian."""
    path.write_bytes(struct.pack(">BBBB", 0, 0, code, array.ndim)
                     + struct.pack(f">{array.ndim}I", *array.shape)
                     + array.astype(dtype).tobytes())


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_infinite_inputs_are_refused_at_load(tmp_path: Path, bad: float) -> None:
    """They loaded, and training ended as 'diverged' with nothing naming the file."""
    x = RNG.random((10, 3))
    x[4, 2] = bad
    np.savez(tmp_path / "a.npz", x=x, y=np.arange(10) % 2)
    with pytest.raises(GengapError, match=r"a.npz: x\[4, 2\] is (NaN|-?inf); inputs must be "
                                          "finite numbers") as err:
        raw("npz", tmp_path, file="a.npz")
    assert "\n" not in str(err.value)
    np.savez(tmp_path / "b.npz", x=x[:3] * 0, y=np.zeros(3, int), x_test=x, y_test=np.zeros(10))
    with pytest.raises(GengapError, match=r"b.npz: x_test\[4, 2\]"):
        raw("npz", tmp_path, file="b.npz")
    write_mnist_like(tmp_path / "mnist", zipped=False)
    images = RNG.random((30, 28, 28))
    images[7, 3, 4] = bad
    write_typed_idx(tmp_path / "mnist" / "train-images-idx3-ubyte", images, 0x0D, ">f4")
    with pytest.raises(GengapError, match=r"train-images-idx3-ubyte: images\[7, 3, 4\] is "):
        raw("mnist", tmp_path)


def test_inputs_past_float32_range_are_refused(tmp_path: Path) -> None:
    x = RNG.random((10, 3))
    x[1, 0] = 1e300  # finite in the file, inf once float32
    np.savez(tmp_path / "a.npz", x=x, y=np.arange(10) % 2)
    with pytest.raises(GengapError, match=r"a.npz: x\[1, 0\] is 1e\+300, past float32's range"):
        raw("npz", tmp_path, file="a.npz")


def test_finite_float64_inputs_pass_as_their_float32_cast() -> None:
    from gengap.data.checks import finite_inputs

    x = RNG.normal(size=(10, 3))
    checked = finite_inputs(Path("a.npz"), x, "x")
    assert checked.dtype == np.float32 and np.array_equal(checked, x.astype(np.float32))
    whole = np.arange(6, dtype=np.uint8)
    assert finite_inputs(Path("a.npz"), whole, "x") is whole


def test_float_labels_that_are_not_whole_numbers_are_refused(tmp_path: Path) -> None:
    """A label of 1.5 was truncated to 1 (SVHN .mat, float IDX); whole floats still load."""
    (tmp_path / "svhn").mkdir()
    write_svhn(tmp_path / "svhn" / "train_32x32.mat", 6)
    write_svhn(tmp_path / "svhn" / "test_32x32.mat", 4)
    mat = tmp_path / "svhn" / "train_32x32.mat"
    arrays = scipy.io.loadmat(mat)
    scipy.io.savemat(mat, {"X": arrays["X"], "y": arrays["y"].astype(float)})
    assert raw("svhn", tmp_path).y_train.tolist() == [0, 1, 2, 3, 4, 5]  # 10.0 -> the digit 0
    for bad, shown in ((1.5, "1.5"), (np.nan, "nan")):
        y = arrays["y"].astype(float)
        y[3] = bad
        scipy.io.savemat(mat, {"X": arrays["X"], "y": y})
        with pytest.raises(GengapError, match=f"train_32x32.mat: labels must be whole numbers "
                                              f"1..10, found {shown}"):
            raw("svhn", tmp_path)
    write_mnist_like(tmp_path / "mnist", zipped=False)
    labels = (np.arange(12) % 10).astype(float)
    write_typed_idx(tmp_path / "mnist" / "t10k-labels-idx1-ubyte", labels, 0x0E, ">f8")
    assert raw("mnist", tmp_path).y_test.tolist() == labels.tolist()
    labels[5] = 2.5
    write_typed_idx(tmp_path / "mnist" / "t10k-labels-idx1-ubyte", labels, 0x0E, ">f8")
    with pytest.raises(GengapError, match="t10k-labels-idx1-ubyte: labels must be whole "
                                          "numbers 0..9, found 2.5"):
        raw("mnist", tmp_path)


def test_every_source_options_share_one_strict_base() -> None:
    """Unknown keys refused, frozen, NaN refused: one base class, not a copy per source."""
    import gengap.interop  # noqa: F401  (registers the pgdl and cnnzoo sources)
    from gengap.data.sources import SourceOptions, sources

    assert SourceOptions.model_config == {"extra": "forbid", "frozen": True,
                                          "allow_inf_nan": False}
    for name in sources:
        options = sources.get(name).options
        assert issubclass(options, SourceOptions), name
        assert options.model_config == SourceOptions.model_config, name


@pytest.mark.parametrize("label", [0, 3])
def test_one_class_of_labels_is_refused_at_load(tmp_path: Path, label: int) -> None:
    # it trained (train and test accuracy 1), then every measure refused it; labels all 3
    # declare 4 classes and were let through
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "one.npz", x=rng.normal(size=(40, 5)).astype(np.float32),
             y=np.full(40, label, dtype=np.int64))
    with pytest.raises(GengapError, match=rf"npz \(.*one.npz\): the training split holds "
                       rf"only class {label}; a classification task needs at least two classes"):
        load(DataSpec(name="npz", options={"file": str(tmp_path / "one.npz")}))
    with pytest.raises(GengapError, match=f"{tmp_path}: a folder, not an .npz file"):
        load(DataSpec(name="npz", options={"file": str(tmp_path)}))


@pytest.mark.parametrize(("fraction", "train", "test"), [(0.999, 1, 1796), (0.001, 1795, 2)])
def test_a_test_fraction_that_leaves_a_split_short_of_classes_is_one_line(fraction, train,
                                                                           test) -> None:
    # scikit-learn's stratified split raised a ValueError traceback
    for source, where in (("digits", "digits"), ("pvr-visual", "pvr-visual's digits")):
        with pytest.raises(GengapError) as err:
            load(DataSpec(name=source, test_fraction=fraction))
        assert str(err.value) == (
            f"{where}: test_fraction = {fraction:g} leaves {train} training and {test} test "
            "examples of 1797, fewer than the 10 classes a stratified split needs on each side")


def test_idx_images_are_bytes_or_unit_floats(tmp_path: Path) -> None:
    """Signed 16-bit images loaded as they were (-500..499), beside bytes scaled to [0, 1]."""
    write_mnist_like(tmp_path / "mnist", zipped=False)
    path = tmp_path / "mnist" / "train-images-idx3-ubyte"
    unit = RNG.random((30, 28, 28))
    write_typed_idx(path, unit, 0x0D, ">f4")
    loaded = raw("mnist", tmp_path)
    assert np.allclose(loaded.x_train[:, 0], unit.astype(np.float32))
    write_typed_idx(path, (unit * 1000 - 500).round(), 0x0B, ">i2")
    with pytest.raises(GengapError, match=r"train-images-idx3-ubyte: images of type int16: "
                                          r"expected unsigned bytes \(0..255\) or floats"):
        raw("mnist", tmp_path)
    write_typed_idx(path, unit * 255, 0x0D, ">f4")
    with pytest.raises(GengapError, match=r"float images from .* to .*: expected values in "
                                          r"\[0, 1\]"):
        raw("mnist", tmp_path)
