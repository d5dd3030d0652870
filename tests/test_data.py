"""Training data sources (cnndsl/train/data.py): loading, fitting to the network input, errors, split.

Oracles are independent of the code under test: hand-computed bilinear values, block means for
2x downscaling, PyTorch's interpolate where torch is installed, and IDX files written here.
"""

import contextlib
import gzip
import re
import struct

import numpy as np
import pytest
from conftest import ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnndsl.errors import CnnError
from cnndsl.train import data as D
from cnndsl.train.data import Data, load_data, split

LENET = (1, 32, 32)
MNIST_LIKE = (1, 28, 28)


def rng_images(n=6, shape=(28, 28), seed=0, dtype=np.uint8):
    return np.random.default_rng(seed).integers(0, 256, (n, *shape)).astype(dtype)


def save_npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def write_idx(path, array, code=0x08, compress=None):
    """An IDX file written from the format's description (not with cnndsl's reader)."""
    dtype = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[code]
    raw = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw += np.ascontiguousarray(array, dtype).tobytes()
    path = str(path)
    if compress if compress is not None else path.endswith(".gz"):
        raw = gzip.compress(raw)
    with open(path, "wb") as f:
        f.write(raw)
    return path


def error(source, shape=MNIST_LIKE, classes=None) -> CnnError:
    with pytest.raises(CnnError) as info:
        load_data(str(source), shape, classes)
    return info.value


# ---------------------------------------------------------------------------------------------
# digits


@pytest.fixture(scope="module")
def digits():
    return load_data("digits", LENET, 10)


def test_digits_loads(digits):
    assert isinstance(digits, Data)
    assert digits.x.shape == (1797, 1, 32, 32) and digits.x.dtype == np.float32
    assert digits.y.shape == (1797,) and digits.y.dtype == np.int64
    assert digits.classes == 10 and digits.names == tuple("0123456789")
    assert digits.x.min() == 0.0 and digits.x.max() == 1.0
    assert np.bincount(digits.y).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]  # sklearn's counts
    assert digits.description == "digits: 1,797 images 8x8 (UCI), upscaled 3x to 24x24, padded to 1x32x32"


def test_digits_first_image_by_hand(digits):
    raw = np.load(ROOT / "cnndsl" / "train" / "datasets" / "digits.npz")
    img = raw["images"][0]
    assert img[1, 2:4].tolist() == [13, 15] and img[2, 2:4].tolist() == [15, 2] and raw["target"][0] == 0
    x = digits.x[0, 0]
    # 8x8 -> 24x24 (k = 3 since 8*3 <= 0.75*32 < 8*4) padded by 4 on each side: the border is 0.
    assert not x[:4].any() and not x[28:].any() and not x[:, :4].any() and not x[:, 28:].any()
    # Output i samples input (i + 0.5)/3 - 0.5: i = 4 -> 1.0, i = 7 -> 2.0 (a pixel exactly).
    assert x[4 + 4, 4 + 7] == pytest.approx(13 / 16)
    # i = 5 -> 1 + 1/3, i = 8 -> 2 + 1/3: weights (2/3, 1/3) on rows 1, 2 and columns 2, 3.
    by_hand = (4 * 13 + 2 * 15 + 2 * 15 + 1 * 2) / 9 / 16
    assert x[4 + 5, 4 + 8] == pytest.approx(by_hand)
    # i = 0 -> -1/3, clamped to the edge: the corner pixel; i = 23 -> 7 + 1/3, clamped to 7.
    assert x[4, 4] == img[0, 0] / 16 and x[4 + 23, 4 + 23] == img[7, 7] / 16


def test_digits_fit_other_inputs():
    rgb = load_data("digits", (3, 28, 28))
    assert rgb.x.shape == (1797, 3, 28, 28) and (rgb.x[:, 0] == rgb.x[:, 2]).all()
    assert rgb.description.endswith("upscaled 2x to 16x16, padded to 3x28x28, replicated to 3 channels")
    flat = load_data("digits", (64,))
    raw = np.load(ROOT / "cnndsl" / "train" / "datasets" / "digits.npz")["images"]
    assert np.array_equal(flat.x, raw.reshape(1797, 64) / np.float32(16))
    assert load_data("digits", (1, 6, 6)).x.shape == (1797, 1, 6, 6)


def test_bilinear_of_a_constant_is_constant():
    x = np.full((1, 1, 8, 8), 0.625, np.float32)
    up = D._resize(x, (24, 24))
    assert up.shape == (1, 1, 24, 24) and np.allclose(up, 0.625, atol=1e-7)


def test_downscale_by_two_is_the_block_mean():
    x = np.random.default_rng(1).random((3, 1, 8, 6), dtype=np.float32)
    blocks = x.reshape(3, 1, 4, 2, 3, 2).mean(axis=(3, 5))
    assert np.allclose(D._resize(x, (4, 3)), blocks, atol=1e-6)


@pytest.mark.parametrize("size_in, size_out", [((8, 8), (24, 24)), ((28, 28), (20, 20)), ((5, 9), (13, 4))])
def test_bilinear_matches_pytorch(size_in, size_out):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(2).random((2, 3, *size_in), dtype=np.float32)
    want = torch.nn.functional.interpolate(torch.from_numpy(x), size=size_out, mode="bilinear", align_corners=False)
    assert np.allclose(D._resize(x, size_out), want.numpy(), atol=1e-5)


# ---------------------------------------------------------------------------------------------
# .npz


def test_npz_nhw_uint8_is_padded_centred(tmp_path):
    x = rng_images(5)
    src = save_npz(tmp_path / "m.npz", x=x, y=np.arange(5))
    d = load_data(src, LENET, 10)
    assert d.x.shape == (5, 1, 32, 32) and d.classes == 5 and d.names == ("0", "1", "2", "3", "4")
    assert np.array_equal(d.x[:, 0, 2:30, 2:30], x / np.float32(255))  # 28 -> 32: 2 rows/columns each side
    border = d.x.copy()
    border[:, :, 2:30, 2:30] = 0
    assert not border.any()
    assert d.description == f"{src}: 5 samples 28x28 uint8, 5 classes, padded to 1x32x32"


@pytest.mark.parametrize(
    "layout, shape, note",
    [
        ("NCHW", (1, 28, 28), "used as is"),
        ("NHW", (1, 28, 28), "used as is"),
        ("NHWC", (1, 28, 28), "channels last to first"),
        ("NCHW", (3, 28, 28), "replicated to 3 channels"),
        ("NHWC", (3, 28, 28), "channels last to first, replicated to 3 channels"),
    ],
)
def test_npz_grey_layouts(tmp_path, layout, shape, note):
    x = rng_images(4)
    stored = {"NCHW": x[:, None], "NHW": x, "NHWC": x[..., None]}[layout]
    d = load_data(save_npz(tmp_path / "a.npz", x=stored, y=[0, 1, 0, 1]), shape)
    assert d.x.shape == (4, *shape) and d.description.endswith(note)
    for c in range(shape[0]):
        assert np.array_equal(d.x[:, c], x / np.float32(255))


def test_npz_rgb_nhwc_to_luminance_and_to_rgb(tmp_path):
    x = np.random.default_rng(3).random((4, 10, 10, 3)).astype(np.float32)
    src = save_npz(tmp_path / "c.npz", images=x, labels=[1, 0, 1, 0])
    grey = load_data(src, (1, 10, 10))
    assert np.allclose(grey.x[:, 0], 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2], atol=1e-6)
    assert grey.description.endswith("channels last to first, RGB to luminance")
    rgb = load_data(src, (3, 10, 10))
    assert np.array_equal(rgb.x, x.transpose(0, 3, 1, 2))


@pytest.mark.parametrize(
    "y, labels, classes",
    [
        ([2, 0, 1], [2, 0, 1], 3),
        (np.array([2.0, 0.0, 1.0]), [2, 0, 1], 3),
        (np.array([[2], [0], [1]], np.uint8), [2, 0, 1], 3),
        (np.eye(5)[[2, 0, 1]], [2, 0, 1], 5),  # one-hot: its width is the number of classes
        (np.array([True, False, True]), [1, 0, 1], 2),
    ],
)
def test_npz_label_forms(tmp_path, y, labels, classes):
    d = load_data(save_npz(tmp_path / "l.npz", x=rng_images(3), y=y), MNIST_LIKE)
    assert d.y.tolist() == labels and d.y.dtype == np.int64 and d.classes == classes


def test_npz_float_x_used_as_is_and_larger_images_scaled_down(tmp_path):
    x = np.random.default_rng(4).standard_normal((2, 1, 64, 32)).astype(np.float64)
    d = load_data(save_npz(tmp_path / "f.npz", x=x, y=[0, 1]), LENET)
    # 64x32 -> 32x16 (a 2x block mean), padded by 8 columns each side.
    blocks = x.reshape(2, 1, 32, 2, 16, 2).mean(axis=(3, 5))
    assert np.allclose(d.x[:, :, :, 8:24], blocks, atol=1e-5) and not d.x[..., :8].any() and not d.x[..., 24:].any()
    assert d.description.endswith("float64, 2 classes, scaled down to 32x16, padded to 1x32x32")


def test_npz_one_dimensional_and_vector_networks(tmp_path):
    sig = np.random.default_rng(5).random((3, 2, 50), dtype=np.float32)
    src = save_npz(tmp_path / "s.npz", x=sig, y=[0, 1, 2])
    assert np.array_equal(load_data(src, (2, 50)).x, sig)
    assert np.array_equal(load_data(src, (2, 60)).x[:, :, 5:55], sig)
    one = load_data(save_npz(tmp_path / "o.npz", x=sig[:, 0], y=[0, 1, 2]), (1, 50))
    assert np.array_equal(one.x[:, 0], sig[:, 0])
    flat = load_data(save_npz(tmp_path / "v.npz", x=rng_images(3), y=[0, 1, 2]), (784,))
    assert flat.x.shape == (3, 784) and flat.description.endswith("flattened")


# ---------------------------------------------------------------------------------------------
# MNIST IDX


@pytest.mark.parametrize(
    "images, labels",
    [
        ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
        ("t10k-images.idx3-ubyte", "t10k-labels.idx1-ubyte"),
        ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte"),  # the labels were unpacked, the images not
    ],
)
def test_idx_found_by_naming_convention(tmp_path, images, labels):
    x, y = rng_images(7), np.array([3, 1, 4, 1, 5, 9, 2], np.uint8)
    src = write_idx(tmp_path / images, x)
    write_idx(tmp_path / labels, y)
    d = load_data(src, LENET, 10)
    assert d.x.shape == (7, 1, 32, 32) and d.y.tolist() == y.tolist() and d.classes == 10
    assert np.array_equal(d.x[:, 0, 2:30, 2:30], x / np.float32(255))
    assert d.description == f"{src}: 7 samples 28x28 uint8 (labels: {labels}), 10 classes, padded to 1x32x32"


def test_idx_pair_given_with_a_comma(tmp_path):
    x = np.random.default_rng(6).random((4, 1, 28, 28)).astype(np.float32)
    images = write_idx(tmp_path / "a.bin", x, code=0x0D, compress=True)  # gzip found by content, not name
    labels = write_idx(tmp_path / "b.bin", np.array([0, 1, 2, 1]), code=0x0C)
    d = load_data(f"{images}, {labels}", MNIST_LIKE)
    assert np.array_equal(d.x, x) and d.y.tolist() == [0, 1, 2, 1]


# ---------------------------------------------------------------------------------------------
# folder of class folders


@pytest.fixture
def image_folder(tmp_path):
    from PIL import Image

    root = tmp_path / "pets"
    (root / "dog").mkdir(parents=True)
    (root / "cat").mkdir()
    (root / ".trash").mkdir()  # hidden: not a class
    Image.new("RGB", (40, 30), (255, 0, 0)).save(root / "cat" / "red.png")
    Image.new("L", (8, 8), 51).save(root / "cat" / "grey.bmp")
    Image.new("RGB", (16, 16), (0, 0, 255)).save(root / "dog" / "blue.JPG", quality=100)
    (root / "dog" / ".DS_Store").write_bytes(b"\0junk")  # hidden: skipped
    (root / "dog" / "notes.txt").write_text("not an image")  # not an image suffix: skipped
    return root


def test_folder_rgb(image_folder):
    d = load_data(str(image_folder), (3, 20, 20), 2)
    assert d.names == ("cat", "dog") and d.classes == 2 and d.y.tolist() == [0, 0, 1]  # cat: grey.bmp, red.png
    assert d.x.shape == (3, 3, 20, 20) and d.x.dtype == np.float32
    assert np.allclose(d.x[0], 0.2) and np.allclose(d.x[1, 0], 1) and not d.x[1, 1:].any()
    assert np.allclose(d.x[2, 2], 1, atol=0.02) and np.allclose(d.x[2, :2], 0, atol=0.02)  # JPEG is lossy
    assert d.description == f"{image_folder}: 3 images in 2 classes, resized to 3x20x20"


def test_folder_grey(image_folder):
    d = load_data(str(image_folder), (1, 12, 12))
    assert d.x.shape == (3, 1, 12, 12)
    assert np.allclose(d.x[1], 0.299, atol=1 / 255)  # Pillow's L of pure red


# ---------------------------------------------------------------------------------------------
# errors: every path asserts the code and the text


def npz_of(**arrays):
    return lambda tmp: save_npz(tmp / "d.npz", **arrays)


def file_of(name, content):
    def make(tmp):
        (tmp / name).write_bytes(content)
        return str(tmp / name)

    return make


def idx_pair(images, labels):
    return lambda tmp: f"{write_idx(tmp / 'i.idx', images)},{write_idx(tmp / 'l.idx', labels)}"


X2 = rng_images(2)
EXPECTED = "expected 'digits', FILE.npz, an MNIST IDX images file (or IMAGES,LABELS), or a folder of class folders"
IDX_HEADER = bytes([0, 0, 8, 3]) + struct.pack(">3I", 2, 28, 28)


def no_class_folders(tmp):
    (tmp / "empty").mkdir()
    (tmp / "empty" / "stray.png").write_bytes(b"")
    return str(tmp / "empty")


def class_without_images(tmp):
    (tmp / "f" / "cat").mkdir(parents=True)
    (tmp / "f" / "cat" / "a.txt").write_text("x")
    return str(tmp / "f")


def unreadable_image(tmp):
    (tmp / "f" / "cat").mkdir(parents=True)
    (tmp / "f" / "cat" / "broken.png").write_bytes(b"\x89PNG not really")
    return str(tmp / "f")


# fmt: off
ERRORS = [
    # (id, make source, network input, classes, code, message after "--data SOURCE: "; {dir} = tmp folder)
    ("missing npz", lambda tmp: str(tmp / "nope.npz"), MNIST_LIKE, None, "E100", "no such file"),
    ("missing path", lambda tmp: str(tmp / "nope"), MNIST_LIKE, None, "E100", "no such file or folder; " + EXPECTED),
    ("unknown kind", file_of("a.csv", b"1,2"), MNIST_LIKE, None, "E100", "not a source cnndsl reads; " + EXPECTED),
    ("empty source", lambda tmp: " ", MNIST_LIKE, None, "E100", "empty source; " + EXPECTED),
    ("three parts", lambda tmp: "a,b,c", MNIST_LIKE, None, "E100",
     "expected IMAGES,LABELS (two IDX files); received 3 comma-separated parts"),
    ("corrupt npz", file_of("c.npz", b"PK\x03\x04garbage"), MNIST_LIKE, None, "E101",
     re.compile(r"cannot read it as \.npz \(BadZipFile: .*\)")),
    ("npy as npz", lambda tmp: (np.save(tmp / "a.npy", X2), (tmp / "a.npy").rename(tmp / "a.npz"), str(tmp / "a.npz"))[-1],
     MNIST_LIKE, None, "E101", "expected a .npz archive of arrays x and y; received a single .npy array"),
    ("pickled arrays", npz_of(x=np.array([{}, {}], dtype=object), y=[0, 1]), MNIST_LIKE, None, "E101",
     re.compile(r"cannot read it as \.npz \(ValueError: .*allow_pickle.*\)")),
    ("missing arrays", npz_of(a=X2, b=[0, 1]), MNIST_LIKE, None, "E102",
     "expected arrays x and y (or images and labels); the file has: a, b"),
    ("wrong rank", npz_of(x=np.zeros((2, 1, 1, 28, 28)), y=[0, 1]), MNIST_LIKE, None, "E103",
     ("x has shape (2, 1, 1, 28, 28); expected (N, 1, 28, 28), (N, 28, 28) or (N, 28, 28, C) "
      "for the network's input 1x28x28")),
    ("scalar x", npz_of(x=np.float32(1), y=[0]), MNIST_LIKE, None, "E103",
     "x has shape (); expected one sample per row, (N, ...)"),
    ("no values", npz_of(x=np.zeros((2, 0, 28)), y=[0, 1]), MNIST_LIKE, None, "E103",
     "x has shape (2, 0, 28); expected one sample per row, (N, ...)"),
    ("channels", npz_of(x=np.zeros((2, 2, 28, 28)), y=[0, 1]), MNIST_LIKE, None, "E103",
     ("x has shape (2, 2, 28, 28), 2 channels; the network's input 1x28x28 takes 1 "
     "(1 channel is replicated, 3 become luminance for a 1-channel network)")),
    ("vector size", npz_of(x=X2, y=[0, 1]), (100,), None, "E103",
     "each sample of x has 784 values (28x28); the network's input is a vector of 100"),
    ("NaN", npz_of(x=np.where(np.eye(28) > 0, np.nan, 0.5)[None].repeat(2, 0), y=[0, 1]), MNIST_LIKE, None,
     "E104", "x has 56 NaN or infinite values (as float32), the first at (0, 0, 0)"),
    ("too big for float32", npz_of(x=np.full((2, 28, 28), 1e300), y=[0, 1]), MNIST_LIKE, None,
     "E104", "x has 1,568 NaN or infinite values (as float32), the first at (0, 0, 0)"),
    ("16-bit pixels", npz_of(x=np.full((2, 28, 28), 1000, np.uint16), y=[0, 1]), MNIST_LIKE, None, "E104",
     "integer x must be 8-bit pixels 0..255; received values 1000..1000 (store floats to use values as they are)"),
    ("string x", npz_of(x=np.array(["a", "b"]), y=[0, 1]), MNIST_LIKE, None, "E104",
     "x has dtype <U1; expected integers (pixels 0..255) or floats"),
    ("complex x", npz_of(x=np.zeros((2, 28, 28), complex), y=[0, 1]), MNIST_LIKE, None, "E104",
     "x has dtype complex128; expected integers (pixels 0..255) or floats"),
    ("fractional label", npz_of(x=X2, y=[0.0, 1.5]), MNIST_LIKE, None, "E105",
     "y[1] is 1.5; expected whole-number class labels"),
    ("NaN label", npz_of(x=X2, y=[np.nan, 1.0]), MNIST_LIKE, None, "E105",
     "y[0] is nan; expected whole-number class labels"),
    ("negative label", npz_of(x=X2, y=[0, -1]), MNIST_LIKE, None, "E105",
     "y has the label -1; expected labels 0, 1, 2 ..."),
    ("not one-hot", npz_of(x=X2, y=[[1, 0, 0], [0.5, 0.5, 0]]), MNIST_LIKE, None, "E105",
     "y has shape (2, 3), read as one-hot, but row 1 is [0.5, 0.5, 0.0]"),
    ("3-D labels", npz_of(x=X2, y=np.zeros((2, 2, 2))), MNIST_LIKE, None, "E105",
     "y has shape (2, 2, 2); expected labels (N,) or one-hot (N, K)"),
    ("string labels", npz_of(x=X2, y=["cat", "dog"]), MNIST_LIKE, None, "E105",
     "y has dtype <U3; expected integer class labels"),
    ("absurd label", npz_of(x=X2, y=[0, 10**12]), MNIST_LIKE, None, "E105",
     "labels go up to 1,000,000,000,000; expected at most 100,000 classes"),
    ("length mismatch", npz_of(x=X2, y=[0, 1, 2]), MNIST_LIKE, None, "E106",
     "x has 2 samples but y has 3 labels; expected one label per sample"),
    ("scalar y", npz_of(x=X2, y=np.int64(3)), MNIST_LIKE, None, "E106",
     "x has 2 samples but y has a scalar; expected one label per sample"),
    ("empty", npz_of(x=np.zeros((0, 28, 28)), y=np.zeros(0)), MNIST_LIKE, None, "E107", "x and y hold no samples"),
    ("labels beyond outputs", npz_of(x=rng_images(12), y=np.arange(12)), MNIST_LIKE, 10, "E108",
     ("labels go up to 11 but the network has 10 outputs; give -D classes=12 "
     "(if the network has that parameter) or make its last layer 12 wide")),
    ("one-hot beyond outputs", npz_of(x=X2, y=np.eye(12)[:2]), MNIST_LIKE, 10, "E108",
     ("the labels are one-hot over 12 classes but the network has 10 outputs; give -D classes=12 "
     "(if the network has that parameter) or make its last layer 12 wide")),
    ("bad magic", lambda tmp: f"{write_idx(tmp / 'i.idx', X2)},{file_of('l.idx', b'PK34xxxx')(tmp)}",
     MNIST_LIKE, None, "E109",
     "{dir}/l.idx: not an IDX file; expected magic 0x00000803 (images) or 0x00000801 (labels); received 0x504b3334"),
    ("unknown IDX type", file_of("x-images-idx3-ubyte", bytes([0, 0, 0x0A, 3])), MNIST_LIKE, None, "E109",
     ("{dir}/x-images-idx3-ubyte: not an IDX file; expected magic 0x00000803 (images) or 0x00000801 (labels); "
     "received 0x00000a03")),
    ("empty IDX", file_of("e-images-idx3-ubyte", b""), MNIST_LIKE, None, "E109",
     ("{dir}/e-images-idx3-ubyte: not an IDX file; expected magic 0x00000803 (images) or 0x00000801 (labels); "
     "received an empty file")),
    ("labels of rank 3", idx_pair(X2, X2), MNIST_LIKE, None, "E109",
     "{dir}/l.idx: expected a labels file (1 dimension, magic 0x00000801); it has 3"),
    ("swapped pair", lambda tmp: f"{write_idx(tmp / 'l.idx', np.zeros(2))},{write_idx(tmp / 'i.idx', X2)}",
     MNIST_LIKE, None, "E109", "{dir}/l.idx holds labels and {dir}/i.idx images; give the images file first"),
    ("truncated IDX", file_of("t-images-idx3-ubyte", IDX_HEADER + bytes(1000)), MNIST_LIKE, None, "E110",
     ("{dir}/t-images-idx3-ubyte: the header promises 2x28x28 uint8 = 1,568 bytes of data; the file has 1,000 "
     "(truncated)")),
    ("extra IDX bytes", file_of("x-images-idx3-ubyte", IDX_HEADER + bytes(1570)), MNIST_LIKE, None, "E110",
     ("{dir}/x-images-idx3-ubyte: the header promises 2x28x28 uint8 = 1,568 bytes of data; the file has 1,570 "
     "(extra bytes at the end)")),
    ("truncated header", file_of("h-images-idx3-ubyte", IDX_HEADER[:9]), MNIST_LIKE, None, "E110",
     "{dir}/h-images-idx3-ubyte: truncated IDX header; expected 16 bytes, the file has 9"),
    ("truncated gzip", file_of("g-images-idx3-ubyte.gz", gzip.compress(IDX_HEADER + bytes(1568))[:30]), MNIST_LIKE,
     None, "E101", re.compile(r"\{dir\}/g-images-idx3-ubyte\.gz: cannot read it \(EOFError: .*\)")),
    ("labels not beside", lambda tmp: write_idx(tmp / "train-images-idx3-ubyte.gz", X2), MNIST_LIKE, None, "E111",
     ("expected the labels file {dir}/train-labels-idx1-ubyte.gz beside it; it does not exist "
     "(give both as --data IMAGES,LABELS)")),
    ("name without convention", lambda tmp: write_idx(tmp / "mine.idx3", X2), MNIST_LIKE, None, "E111",
     ("cannot tell the labels file from this name (MNIST names images files NAME-images-idx3-ubyte); "
     "give both as --data IMAGES,LABELS")),
    ("no class folders", no_class_folders, MNIST_LIKE, None, "E112",
     "expected one folder per class (e.g. cat/, dog/) holding images; found no class folders"),
    ("class without images", class_without_images, MNIST_LIKE, None, "E112",
     "class folder cat/ has no images (expected .png, .jpg, .jpeg, .bmp, .gif, .pgm, .ppm, .tif, .tiff, .webp files)"),
    ("unreadable image", unreadable_image, MNIST_LIKE, None, "E113",
     re.compile(r"cannot read image \{dir\}/f/cat/broken\.png \(UnidentifiedImageError: .*\)")),
    ("folder, 1-D network", unreadable_image, (1, 50), None, "E115",
     "a folder of images needs a network with input CxHxW; its input is 1x50"),
    ("digits, 1-D network", lambda tmp: "digits", (1, 50), None, "E115",
     "the digits are 8x8 images; the network's input 1x50 takes CxHxW or a vector"),
    ("digits, too few outputs", lambda tmp: "digits", LENET, 8, "E108",
     ("labels go up to 9 but the network has 8 outputs; give -D classes=10 "
     "(if the network has that parameter) or make its last layer 10 wide")),
    ("no input shape", lambda tmp: "digits", (), None, "E115",
     "the network's input  is not a shape data can be fitted to"),
]
# fmt: on


@pytest.mark.parametrize("name, make, shape, classes, code, message", ERRORS, ids=[e[0] for e in ERRORS])
def test_error(tmp_path, name, make, shape, classes, code, message):
    source = make(tmp_path)
    err = error(source, shape, classes)
    assert err.diagnostic.code == code
    prefix = f"--data {source}: "
    text = err.diagnostic.message
    assert text.startswith(prefix)
    if isinstance(message, re.Pattern):
        assert re.fullmatch(message.pattern.replace(r"\{dir\}", re.escape(str(tmp_path))), text[len(prefix) :])
    else:
        assert text[len(prefix) :] == message.format(dir=tmp_path)


def test_every_error_code_is_tested_and_documented():
    codes = set(re.findall(r'"(E1\d\d)"', (ROOT / "cnndsl" / "train" / "data.py").read_text()))
    tested = {e[4] for e in ERRORS} | {"E114", "E116"}  # E114: split, below; E116: --masks, tests/test_dense.py
    assert codes == tested
    docs = (ROOT / "docs" / "data.md").read_text()
    for code in codes:
        assert re.search(rf"^\| `?{code}`? \|", docs, re.MULTILINE), f"{code} missing from docs/data.md"


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    head=st.sampled_from([b"", b"\0\0\x08\x01", b"\0\0\x08\x03", b"\0\0\x0d\x02", b"PK\x03\x04", b"\x1f\x8b"]),
    raw=st.binary(max_size=64),
    name=st.sampled_from(["f.npz", "f-images-idx3-ubyte", "f-images-idx3-ubyte.gz"]),
)
def test_any_bytes_give_data_or_cnn_error(tmp_path, head, raw, name):
    (tmp_path / name).write_bytes(head + raw)
    write_idx(tmp_path / "f-labels-idx1-ubyte", np.zeros(1, np.uint8))
    write_idx(tmp_path / "f-labels-idx1-ubyte.gz", np.zeros(1, np.uint8))
    with contextlib.suppress(CnnError):
        load_data(str(tmp_path / name), (1, 4, 4), None)


# ---------------------------------------------------------------------------------------------
# split


def test_split_is_stratified_and_deterministic(digits):
    train, held = split(digits, 0.2, seed=0)
    per_class = np.bincount(digits.y)
    assert np.bincount(held.y).tolist() == [int(np.floor(0.2 * n + 0.5)) for n in per_class]
    assert len(train.y) + len(held.y) == 1797
    again_train, again_held = split(digits, 0.2, seed=0)
    assert np.array_equal(held.x, again_held.x) and np.array_equal(train.y, again_train.y)
    other = split(digits, 0.2, seed=1)[1]
    assert not np.array_equal(held.x, other.x)
    # Disjoint and complete: every image (all 1,797 differ) lands in exactly one part.
    rows = {r.tobytes() for r in digits.x}
    assert len(rows) == 1797 and {r.tobytes() for r in np.concatenate([train.x, held.x])} == rows
    assert train.classes == held.classes == 10 and train.names == digits.names
    assert held.description == digits.description + "; 359 held out"


def test_split_keeps_a_training_sample_per_class():
    y = np.array([0, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2])
    x = np.arange(len(y), dtype=np.float32)[:, None]
    d = Data(x, y, 3, ("a", "b", "c"), "t: test")
    train, held = split(d, 0.5, seed=3)
    # Half of 1, 2 and 11 samples, rounded half up: 0 (the only sample trains), 1, 6.
    assert np.bincount(held.y, minlength=3).tolist() == [0, 1, 6]
    assert np.bincount(train.y, minlength=3).tolist() == [1, 1, 5]
    assert sorted(np.concatenate([train.x, held.x])[:, 0].tolist()) == list(range(len(y)))
    tiny = Data(x[:2], np.array([0, 0]), 1, ("a",), "t: test")
    assert [len(p.y) for p in split(tiny, 0.2)] == [1, 1]  # rounds to 0, but one is held out when possible
    assert [len(p.y) for p in split(Data(x[:2], np.array([0, 1]), 2, ("a", "b"), "t: test"))] == [2, 0]


@pytest.mark.parametrize(
    "n, held_out, message",
    [
        (1, 0.2, "--data t: splitting off held-out data needs at least 2 samples; the data has 1"),
        (5, 1.0, "--data t: the held-out fraction must be between 0 and 1; received 1.0"),
        (5, 0.0, "--data t: the held-out fraction must be between 0 and 1; received 0.0"),
    ],
)
def test_split_errors(n, held_out, message):
    d = Data(np.zeros((n, 1), np.float32), np.zeros(n, np.int64), 1, ("0",), "t: test")
    with pytest.raises(CnnError) as info:
        split(d, held_out)
    assert info.value.diagnostic.code == "E114" and info.value.diagnostic.message == message
