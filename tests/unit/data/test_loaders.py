"""Tests of the user-data loaders: image folders and .npz archives."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from dnnsafety.data.dataset import (
    NOMINAL,
    UNKNOWN_LABEL,
    UNKNOWN_SCENARIO,
    Dataset,
    reveal_labels,
)
from dnnsafety.data.imagefolder import POOL_PLACEHOLDER_LABEL, load_image_folder
from dnnsafety.data.npz import load_npz
from dnnsafety.exceptions import ConfigError, HiddenLabelsError, InvalidInputError

# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def save_image(
    path: Path,
    size: tuple[int, int] = (8, 8),
    mode: str = "RGB",
    value: int = 100,
    fmt: str | None = None,
) -> Path:
    """Write a flat image of ``size`` = (height, width) in ``mode``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = size
    if mode == "I;16":
        img = Image.fromarray(np.full((h, w), value * 257, dtype=np.uint16))
    else:
        img = Image.new("RGB", (w, h), (value, value // 2, 255 - value)).convert(mode)
    img.save(path, format=fmt)
    return path


def make_tree(
    root: Path,
    splits: dict[str, dict[str, int]],
    size: tuple[int, int] = (8, 8),
    mode: str = "RGB",
) -> Path:
    """``splits[split][class] = n`` images named ``img_<i>.png``."""
    for split, classes in splits.items():
        for cls, n in classes.items():
            for i in range(n):
                save_image(root / split / cls / f"img_{i}.png", size, mode, value=10 * i + 5)
    return root


BASIC = {"train": {"cat": 3, "dog": 2}, "test": {"cat": 1, "dog": 2}}


@pytest.fixture
def basic(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "data", BASIC)


def png_bytes(size: tuple[int, int] = (8, 8)) -> bytes:
    """A PNG of random (incompressible) RGB pixels, so that cutting it loses pixel data."""
    pixels = np.random.default_rng(1).integers(0, 256, (*size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# image folder: good input
# --------------------------------------------------------------------------------------------


def test_rgb_folder(tmp_path: Path) -> None:
    root = make_tree(
        tmp_path / "signs",
        {
            "train": {"stop": 2, "yield": 3},
            "val": {"stop": 1, "yield": 1},
            "test": {"yield": 1, "stop": 2},
            "pool": {"stop": 2},
        },
    )
    ds = load_image_folder(root)
    assert isinstance(ds, Dataset)
    assert ds.name == "signs"
    assert ds.class_names == ("stop", "yield")
    assert set(ds.splits) == {"train", "val", "test", "pool"}
    assert ds.image_shape == (3, 8, 8)
    test = ds["test"]
    assert test.ids.tolist() == [
        "test/stop/img_0.png",
        "test/stop/img_1.png",
        "test/yield/img_0.png",
    ]
    assert test.labels.tolist() == [0, 0, 1]
    assert test.images.dtype == torch.float32
    assert float(test.images.min()) >= 0.0 and float(test.images.max()) <= 1.0
    # the pixel value survives: value 15 -> 15 / 255 in the red channel
    assert torch.allclose(test.images[1, 0], torch.full((8, 8), 15 / 255))
    assert test.scenarios.tolist() == [UNKNOWN_SCENARIO] * 3  # nothing says they are nominal
    assert test.metadata is None
    with pytest.raises(HiddenLabelsError):
        _ = ds["pool"].labels
    assert ds["pool"].label_values.tolist() == [0, 0]


def test_loading_is_deterministic(basic: Path) -> None:
    a = load_image_folder(basic, num_workers=1)
    b = load_image_folder(basic, num_workers=4)
    for split in ("train", "test"):
        assert a[split].ids.tolist() == b[split].ids.tolist()
        assert torch.equal(a[split].images, b[split].images)


def test_greyscale_folder(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "d", BASIC, mode="L")
    ds = load_image_folder(root)
    assert ds.image_shape == (1, 8, 8)
    ds3 = load_image_folder(root, channels=3)
    assert ds3.image_shape == (3, 8, 8)
    assert torch.equal(ds3["train"].images[:, 0], ds3["train"].images[:, 2])


def test_sixteen_bit_greyscale_is_scaled(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "d", BASIC, mode="I;16")
    ds = load_image_folder(root)
    assert ds.image_shape == (1, 8, 8)
    assert torch.allclose(ds["train"].images[0], torch.full((1, 8, 8), 5 / 255))


def test_jpeg_and_bmp(tmp_path: Path) -> None:
    root = tmp_path / "d"
    save_image(root / "train" / "a" / "x.JPG", fmt="JPEG")
    save_image(root / "train" / "b" / "y.bmp")
    save_image(root / "test" / "a" / "z.jpeg", fmt="JPEG")
    ds = load_image_folder(root)
    assert ds["train"].ids.tolist() == ["train/a/x.JPG", "train/b/y.bmp"]
    assert ds["test"].labels.tolist() == [0]


def save_rotated_jpeg(path: Path, orientation: int = 6) -> Path:
    """A 8 x 16 (height x width) greyscale JPEG, dark left half and bright right half, whose
    EXIF tag says viewers must turn it: orientation 6 = 90 degrees clockwise, so they show a
    16 x 8 picture with the dark half on top."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full((8, 16), 230, dtype=np.uint8)
    pixels[:, :8] = 20
    exif = Image.Exif()
    exif[0x0112] = orientation  # the EXIF Orientation tag
    Image.fromarray(pixels).save(path, format="JPEG", exif=exif, quality=95)
    return path


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    root = tmp_path / "d"
    save_rotated_jpeg(root / "train" / "a" / "phone.jpg")
    save_image(root / "test" / "a" / "upright.png", size=(16, 8), mode="L")
    # without image_size: the rotated photo is 16 x 8 as shown, like the PNG: no size error
    ds = load_image_folder(root)
    assert ds.image_shape == (1, 16, 8)
    photo = ds["train"].images[0, 0] * 255
    assert float(photo[:8].mean()) < 40  # the dark half is on top ...
    assert float(photo[8:].mean()) > 210  # ... and the bright half below
    # resizing keeps the upright picture instead of squashing the stored one
    small = load_image_folder(root, image_size=(8, 4))["train"].images[0, 0] * 255
    assert float(small[:4].mean()) < 40 and float(small[4:].mean()) > 210


def test_size_error_names_the_upright_size(tmp_path: Path) -> None:
    root = tmp_path / "d"
    save_rotated_jpeg(root / "train" / "a" / "phone.jpg")
    save_image(root / "test" / "a" / "wide.png", size=(8, 16), mode="L")
    with pytest.raises(InvalidInputError, match="image_size") as err:
        load_image_folder(root)
    assert "16x8" in str(err.value) and "8x16" in str(err.value)


def test_different_sizes_need_image_size(tmp_path: Path) -> None:
    root = tmp_path / "d"
    save_image(root / "train" / "a" / "small.png", (8, 8))
    save_image(root / "train" / "a" / "tall.png", (12, 5))
    save_image(root / "test" / "a" / "t.png", (20, 20))
    with pytest.raises(InvalidInputError, match="image_size") as err:
        load_image_folder(root)
    assert "train/a/small.png" in str(err.value)
    assert "train/a/tall.png" in str(err.value)
    ds = load_image_folder(root, image_size=6)
    assert ds.image_shape == (3, 6, 6)
    ds = load_image_folder(root, image_size=(4, 7))
    assert ds.image_shape == (3, 4, 7)


def test_mixed_modes_need_channels(tmp_path: Path) -> None:
    root = tmp_path / "d"
    save_image(root / "train" / "a" / "grey.png", mode="L")
    save_image(root / "train" / "b" / "colour.png", mode="RGB")
    save_image(root / "test" / "a" / "t.png", mode="RGB")
    with pytest.raises(InvalidInputError, match="channels") as err:
        load_image_folder(root)
    assert "train/a/grey.png" in str(err.value)
    assert "train/b/colour.png" in str(err.value)
    assert load_image_folder(root, channels=3).image_shape == (3, 8, 8)
    assert load_image_folder(root, channels=1).image_shape == (1, 8, 8)


def test_colour_modes_mix_without_channels(tmp_path: Path) -> None:
    root = tmp_path / "d"
    save_image(root / "train" / "a" / "rgba.png", mode="RGBA")
    save_image(root / "train" / "a" / "palette.png", mode="P")
    save_image(root / "test" / "a" / "rgb.png", mode="RGB")
    save_image(root / "test" / "a" / "bw.png", mode="1")
    with pytest.raises(InvalidInputError, match="greyscale and colour"):
        load_image_folder(root)
    os.remove(root / "test" / "a" / "bw.png")
    assert load_image_folder(root).image_shape == (3, 8, 8)


def test_flat_and_class_pool(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "d", {**BASIC, "pool": {"dog": 1}})
    save_image(root / "pool" / "unknown_1.png")
    save_image(root / "pool" / "unknown_2.png")
    ds = load_image_folder(root)
    pool = ds["pool"]
    assert pool.ids.tolist() == ["pool/dog/img_0.png", "pool/unknown_1.png", "pool/unknown_2.png"]
    assert pool.hidden
    assert pool.label_values.tolist() == [1, POOL_PLACEHOLDER_LABEL, POOL_PLACEHOLDER_LABEL]


def test_class_only_in_test_warns(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "d", {"train": {"a": 1}, "test": {"a": 1, "b": 1}})
    with pytest.warns(UserWarning, match=r"b \(in test\) have no folder in train"):
        ds = load_image_folder(root)
    assert ds.class_names == ("a", "b")
    assert ds["test"].labels.tolist() == [0, 1]


def test_splits_argument(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "d", {**BASIC, "val": {"cat": 1}})
    ds = load_image_folder(root, splits=["test", "train"])
    assert set(ds.splits) == {"train", "test"}
    with pytest.raises(InvalidInputError, match="pool"):
        load_image_folder(root, splits=["train", "test", "pool"])
    with pytest.raises(ConfigError, match="train"):
        load_image_folder(root, splits=["test", "val"])
    with pytest.raises(ConfigError, match=r"[Uu]nknown"):
        load_image_folder(root, splits=["train", "test", "holdout"])


def test_progress_reports_every_file(basic: Path) -> None:
    calls: list[int] = []
    load_image_folder(basic, progress=calls.append)
    assert sum(calls) == 8
    assert all(c > 0 for c in calls)


def test_bad_arguments(basic: Path) -> None:
    with pytest.raises(ConfigError, match="channels"):
        load_image_folder(basic, channels=2)
    with pytest.raises(ConfigError, match="image_size"):
        load_image_folder(basic, image_size=0)
    with pytest.raises(ConfigError, match="image_size"):
        load_image_folder(basic, image_size=(3, 4, 5))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="on_error"):
        load_image_folder(basic, on_error="ignore")  # type: ignore[arg-type]


def test_hidden_files_ignored_and_unknown_files_warned_once(basic: Path) -> None:
    (basic / "train" / "cat" / ".DS_Store").write_bytes(b"\0\1junk")
    (basic / ".hidden").mkdir()
    (basic / "train" / "Thumbs.db").write_bytes(b"junk")
    (basic / "README.md").write_text("about")  # top-level files are ignored silently
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_image_folder(basic)
    assert caught == []
    assert len(ds["train"]) == 5

    for i in range(3):
        (basic / "train" / "cat" / f"notes_{i}.txt").write_text("x")
    with pytest.warns(UserWarning, match="notes_0.txt") as record:
        load_image_folder(basic)
    assert len([w for w in record if "notes_" in str(w.message)]) == 1


def test_unknown_top_level_folder_warns(basic: Path) -> None:
    save_image(basic / "validation" / "cat" / "x.png")
    with pytest.warns(UserWarning, match="validation"):
        ds = load_image_folder(basic)
    assert "val" not in ds.splits


def test_nested_class_subfolders(basic: Path) -> None:
    save_image(basic / "train" / "cat" / "more" / "deep.png")
    ds = load_image_folder(basic)
    assert "train/cat/more/deep.png" in ds["train"].ids.tolist()


# --------------------------------------------------------------------------------------------
# image folder: metadata
# --------------------------------------------------------------------------------------------


def test_metadata_csv(basic: Path, tmp_path: Path) -> None:
    csv = tmp_path / "meta.csv"
    csv.write_text(
        "path,weather,speed,scenario\n"
        "test/dog/img_1.png,rain,30,fog\n"
        "./test/cat/img_0.png,sun,50,\n"
        "train/cat/img_0.png,snow,10,night\n"
    )
    ds = load_image_folder(basic, metadata_csv=csv)
    test = ds["test"]
    assert test.ids.tolist() == ["test/cat/img_0.png", "test/dog/img_0.png", "test/dog/img_1.png"]
    # an empty cell is nominal; an image without a row has no known scenario
    assert test.scenarios.tolist() == [NOMINAL, UNKNOWN_SCENARIO, "fog"]
    assert test.metadata is not None
    assert list(test.metadata.columns) == ["weather", "speed"]  # no path, no scenario
    assert test.metadata["weather"].tolist()[0] == "sun"
    assert test.metadata["weather"].isna().tolist() == [False, True, False]
    assert test.metadata["speed"].tolist()[2] == 30
    train = ds["train"]
    assert train.scenarios.tolist()[0] == "night"
    assert train.metadata is not None and len(train.metadata) == len(train)


def test_metadata_rows_for_missing_files_warn(basic: Path, tmp_path: Path) -> None:
    csv = tmp_path / "meta.csv"
    csv.write_text("path,w\ntest/cat/img_0.png,1\ntest/cat/gone.png,2\n")
    with pytest.warns(UserWarning, match="test/cat/gone.png"):
        ds = load_image_folder(basic, metadata_csv=csv)
    assert ds["test"].metadata is not None


def test_metadata_without_path_column(basic: Path, tmp_path: Path) -> None:
    csv = tmp_path / "meta.csv"
    csv.write_text("file,w\ntest/cat/img_0.png,1\n")
    with pytest.raises(InvalidInputError, match="'path' column") as err:
        load_image_folder(basic, metadata_csv=csv)
    assert str(csv) in str(err.value)


def test_metadata_duplicate_paths(basic: Path, tmp_path: Path) -> None:
    csv = tmp_path / "meta.csv"
    csv.write_text("path,w\ntest/cat/img_0.png,1\n./test/cat/img_0.png,2\n")
    with pytest.raises(InvalidInputError, match="more than once") as err:
        load_image_folder(basic, metadata_csv=csv, on_error="skip")
    assert "test/cat/img_0.png" in str(err.value)


@pytest.mark.parametrize(
    "bad", ["../outside.png", "test/../../x.png", "/etc/passwd", "test\\..\\..\\x.png"]
)
def test_metadata_path_escaping_root(basic: Path, tmp_path: Path, bad: str) -> None:
    csv = tmp_path / "meta.csv"
    csv.write_text(f"path,w\ntest/cat/img_0.png,1\n{bad},2\n")
    with pytest.raises(InvalidInputError) as err:
        load_image_folder(basic, metadata_csv=csv)
    assert bad in str(err.value).replace("\\\\", "\\")
    with pytest.warns(UserWarning, match="Skipped 1 bad input"):
        ds = load_image_folder(basic, metadata_csv=csv, on_error="skip")
    assert ds["test"].metadata is not None
    assert ds["test"].metadata["w"].tolist()[0] == 1


def test_metadata_file_missing_or_unreadable(basic: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"nope\.csv"):
        load_image_folder(basic, metadata_csv=tmp_path / "nope.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(InvalidInputError, match=r"empty\.csv"):
        load_image_folder(basic, metadata_csv=empty)


# --------------------------------------------------------------------------------------------
# image folder: bad input
# --------------------------------------------------------------------------------------------


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="does not exist") as err:
        load_image_folder(tmp_path / "nowhere")
    assert "nowhere" in str(err.value)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidInputError, match="not a folder"):
        load_image_folder(tmp_path / "file")


@pytest.mark.parametrize("missing", ["train", "test"])
def test_missing_required_split(tmp_path: Path, missing: str) -> None:
    root = make_tree(tmp_path / "d", {s: c for s, c in BASIC.items() if s != missing})
    with pytest.raises(InvalidInputError, match=f"{missing}") as err:
        load_image_folder(root, on_error="skip")
    assert str(root / missing) in str(err.value)


def test_no_images_at_all(tmp_path: Path) -> None:
    root = tmp_path / "d"
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    with pytest.raises(InvalidInputError, match="no usable images") as err:
        load_image_folder(root)
    assert str(root / "train") in str(err.value)


def test_empty_class_folder(basic: Path) -> None:
    (basic / "train" / "bird").mkdir()
    with pytest.raises(InvalidInputError, match="empty") as err:
        load_image_folder(basic)
    assert "train/bird" in str(err.value)
    with pytest.warns(UserWarning, match="train/bird"):
        ds = load_image_folder(basic, on_error="skip")
    assert ds.class_names == ("cat", "dog")


def test_image_directly_in_split_folder(basic: Path) -> None:
    save_image(basic / "train" / "loose.png")
    with pytest.raises(InvalidInputError, match="class folder") as err:
        load_image_folder(basic)
    assert "train/loose.png" in str(err.value)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty"),
        (b"this is not an image at all", "cannot be read"),
        (png_bytes()[:40], "cannot be read"),  # truncated PNG: header but broken data
        (png_bytes()[:-60], "cannot be read"),  # pixel data cut short
    ],
    ids=["zero-bytes", "garbage", "truncated-header", "truncated-tail"],
)
def test_corrupt_image(basic: Path, content: bytes, reason: str) -> None:
    bad = basic / "test" / "dog" / "broken.png"
    bad.write_bytes(content)
    with pytest.raises(InvalidInputError, match=reason) as err:
        load_image_folder(basic)
    assert "test/dog/broken.png" in str(err.value)


def test_skip_mode_skips_bad_files_with_one_warning(basic: Path) -> None:
    for i in range(15):
        (basic / "train" / "dog" / f"bad_{i:02d}.png").write_bytes(b"junk")
    (basic / "test" / "cat" / "zero.png").write_bytes(b"")
    with pytest.warns(UserWarning, match="Skipped 16 bad input") as record:
        ds = load_image_folder(basic, on_error="skip")
    messages = [str(w.message) for w in record if "Skipped" in str(w.message)]
    assert len(messages) == 1
    assert "bad_00.png" in messages[0] and "more" in messages[0]
    assert len(ds["train"]) == 5 and len(ds["test"]) == 3
    assert not any("bad_" in i for i in ds["train"].ids.tolist())


def test_split_with_only_bad_files(basic: Path) -> None:
    shutil.rmtree(basic / "test")
    (basic / "test" / "cat").mkdir(parents=True)
    (basic / "test" / "cat" / "x.png").write_bytes(b"junk")
    with pytest.warns(UserWarning), pytest.raises(InvalidInputError, match="could be read"):
        load_image_folder(basic, on_error="skip")


needs_symlinks = pytest.mark.skipif(not hasattr(os, "symlink") or os.name == "nt", reason="posix")


@needs_symlinks
def test_symlinked_file_outside_root(basic: Path, tmp_path: Path) -> None:
    outside = save_image(tmp_path / "secret.png")
    link = basic / "train" / "cat" / "link.png"
    os.symlink(outside, link)
    with pytest.raises(InvalidInputError, match="outside the data folder") as err:
        load_image_folder(basic)
    assert "train/cat/link.png" in str(err.value)
    with pytest.warns(UserWarning, match="link.png"):
        ds = load_image_folder(basic, on_error="skip")
    assert "train/cat/link.png" not in ds["train"].ids.tolist()


@needs_symlinks
def test_symlinked_folder_outside_root(basic: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    save_image(outside / "x.png")
    os.symlink(outside, basic / "train" / "bird")
    with pytest.raises(InvalidInputError, match="outside the data folder") as err:
        load_image_folder(basic)
    assert "train/bird" in str(err.value)
    os.remove(basic / "train" / "bird")
    os.symlink(outside, basic / "train" / "cat" / "sub")
    with pytest.raises(InvalidInputError, match="train/cat/sub"):
        load_image_folder(basic)


@needs_symlinks
def test_symlinked_split_outside_root(basic: Path, tmp_path: Path) -> None:
    outside = make_tree(tmp_path / "other", {"test": {"cat": 1}}) / "test"
    shutil.rmtree(basic / "test")
    os.symlink(outside, basic / "test")
    with pytest.raises(InvalidInputError, match="outside the data folder"):
        load_image_folder(basic)


@needs_symlinks
def test_symlinks_inside_root_are_fine(basic: Path) -> None:
    os.symlink(basic / "train" / "cat" / "img_0.png", basic / "test" / "cat" / "alias.png")
    os.symlink(basic / "train", basic / "train" / "cat" / "loop")  # a loop back up the tree
    ds = load_image_folder(basic)
    assert "test/cat/alias.png" in ds["test"].ids.tolist()


@needs_symlinks
def test_broken_symlink(basic: Path) -> None:
    os.symlink(basic / "nothing.png", basic / "test" / "cat" / "dangling.png")
    with pytest.raises(InvalidInputError, match=r"dangling\.png"):
        load_image_folder(basic)


# --------------------------------------------------------------------------------------------
# image folder: fuzzing
# --------------------------------------------------------------------------------------------

_NAME = st.text(alphabet="abxyz019_-", min_size=1, max_size=4)
_CONTENT = st.one_of(
    st.tuples(
        st.just("image"),
        st.sampled_from(["RGB", "L", "RGBA", "P", "LA", "1", "I;16"]),
        st.tuples(st.integers(1, 10), st.integers(1, 10)),
        st.sampled_from(["png", "jpg", "bmp"]),
    ),
    st.tuples(st.just("truncated"), st.floats(0.0, 0.99)),
    st.just(("zero",)),
    st.tuples(st.just("random"), st.binary(min_size=1, max_size=64)),
    st.just(("text",)),
)
_ENTRY = st.tuples(
    st.sampled_from(["train", "test", "val", "pool", "extra"]),
    st.one_of(st.none(), _NAME),  # None: directly in the split folder
    _CONTENT,
)


def _write_fuzz_file(folder: Path, index: int, content: tuple[Any, ...]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    kind = content[0]
    if kind == "image":
        _, mode, (h, w), fmt = content
        if mode == "I;16":
            img = Image.fromarray(np.full((h, w), index * 999, dtype=np.uint16))
            fmt = "png"
        else:
            img = Image.new("RGB", (w, h), (index * 40 % 256, 90, 200)).convert(mode)
        if fmt == "jpg" and img.mode not in ("L", "RGB"):
            img = img.convert("RGB")
        if fmt == "bmp" and img.mode not in ("1", "L", "P", "RGB"):
            img = img.convert("RGB")
        img.save(folder / f"f{index}.{fmt}", format={"jpg": "JPEG"}.get(fmt, fmt.upper()))
    elif kind == "truncated":
        data = png_bytes((6, 5))
        fraction = content[1]
        (folder / f"f{index}.png").write_bytes(data[: int(len(data) * fraction)])
    elif kind == "zero":
        (folder / f"f{index}.jpg").write_bytes(b"")
    elif kind == "random":
        (folder / f"f{index}.png").write_bytes(content[1])
    else:
        (folder / f"f{index}.txt").write_text("notes")


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    seed_images=st.booleans(),
    entries=st.lists(_ENTRY, min_size=0, max_size=12),
    empty_dirs=st.lists(st.tuples(st.sampled_from(["train", "test", "pool"]), _NAME), max_size=2),
    image_size=st.one_of(st.none(), st.integers(1, 6)),
    channels=st.sampled_from([None, 1, 3]),
    on_error=st.sampled_from(["raise", "skip"]),
)
def test_fuzz_image_folder(
    seed_images: bool,
    entries: list[tuple[str, str | None, tuple[Any, ...]]],
    empty_dirs: list[tuple[str, str]],
    image_size: int | None,
    channels: int | None,
    on_error: str,
) -> None:
    root = Path(tempfile.mkdtemp(prefix="fuzz-"))
    try:
        if seed_images:  # a valid core, so that the random entries are not all refused early
            for split in ("train", "test"):
                save_image(root / split / "seed" / "seed.png", (5, 5))
        for i, (split, cls, content) in enumerate(entries):
            _write_fuzz_file(root / split / cls if cls else root / split, i, content)
        for split, cls in empty_dirs:
            (root / split / cls).mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = load_image_folder(
                    root,
                    image_size=image_size,
                    channels=channels,
                    on_error=on_error,  # type: ignore[arg-type]
                )
            except InvalidInputError:
                event("refused")
                return
        event("loaded")
        assert {"train", "test"} <= set(ds.splits)
        shapes: set[tuple[int, int, int]] = set()
        for part in ds.splits.values():
            n = len(part)
            assert n > 0
            assert part.images.shape[0] == n == len(part.label_values) == len(part.scenarios)
            assert part.images.dtype == torch.float32
            assert float(part.images.min()) >= 0.0 and float(part.images.max()) <= 1.0
            assert len(set(part.ids.tolist())) == n
            assert all((root / sid).exists() for sid in part.ids.tolist())
            valid = (part.label_values >= 0) & (part.label_values < ds.num_classes)
            if part.hidden:
                valid |= part.label_values == UNKNOWN_LABEL
            assert valid.all()
            shapes.add(part.image_shape)
            if image_size is not None:
                assert part.image_shape[1:] == (image_size, image_size)
            if channels is not None:
                assert part.image_shape[0] == channels
        assert len(shapes) == 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# npz
# --------------------------------------------------------------------------------------------


def _arrays(
    n_train: int = 6, n_test: int = 4, shape: tuple[int, ...] = (8, 8, 3)
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
        "y_train": np.arange(n_train) % 3,
        "x_test": rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
        "y_test": np.arange(n_test) % 3,
    }


def _save(tmp_path: Path, **arrays: np.ndarray) -> Path:
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


def test_npz_nhwc_uint8(tmp_path: Path) -> None:
    arrays = _arrays()
    ds = load_npz(_save(tmp_path, **arrays))
    assert ds.name == "data"
    assert ds.class_names == ("0", "1", "2")
    assert ds.image_shape == (3, 8, 8)
    train = ds["train"]
    assert train.ids.tolist()[:2] == ["train/0", "train/1"]
    expected = torch.from_numpy(arrays["x_train"]).permute(0, 3, 1, 2).float() / 255
    assert torch.allclose(train.images, expected)
    assert train.labels.tolist() == [0, 1, 2, 0, 1, 2]


def test_npz_nchw_float_and_nhw(tmp_path: Path) -> None:
    arrays = _arrays(shape=(1, 5, 7))
    arrays["x_train"] = arrays["x_train"].astype(np.float64) / 255
    ds = load_npz(_save(tmp_path, **arrays))
    assert ds.image_shape == (1, 5, 7)
    arrays = _arrays(shape=(5, 7))
    ds = load_npz(_save(tmp_path, **arrays))
    assert ds.image_shape == (1, 5, 7)


def test_npz_optional_keys(tmp_path: Path) -> None:
    arrays = _arrays()
    extra = _arrays(n_train=3, n_test=2)
    arrays.update(
        x_val=extra["x_train"],
        y_val=extra["y_train"],
        x_pool=extra["x_test"],
        class_names=np.array(["car", "bike", "bus"]),
        ids_test=np.array(["a", "b", "c", "d"]),
        scenario_test=np.array(["fog", "", "night", "fog"]),
    )
    ds = load_npz(_save(tmp_path, **arrays))
    assert ds.class_names == ("car", "bike", "bus")
    assert set(ds.splits) == {"train", "val", "test", "pool"}
    assert ds["test"].ids.tolist() == ["a", "b", "c", "d"]
    assert ds["test"].scenarios.tolist() == ["fog", NOMINAL, "night", "fog"]
    assert ds["train"].scenarios.tolist() == [UNKNOWN_SCENARIO] * 6  # no scenario_train
    with pytest.raises(HiddenLabelsError):
        _ = ds["pool"].labels
    assert ds["pool"].label_values.tolist() == [UNKNOWN_LABEL, UNKNOWN_LABEL]
    with pytest.raises(InvalidInputError, match="label these images by hand"):
        reveal_labels(ds["pool"], [ds["pool"].ids[0]])


def test_npz_layout_key_for_ambiguous_shape(tmp_path: Path) -> None:
    arrays = _arrays(shape=(3, 8, 3))
    with pytest.raises(InvalidInputError, match="layout") as err:
        load_npz(_save(tmp_path, **arrays))
    assert "x_train" in str(err.value)
    ds = load_npz(_save(tmp_path, **arrays, layout=np.array("NHWC")))
    assert ds.image_shape == (3, 3, 8)
    # one unambiguous array settles the layout of the others
    arrays["x_test"] = np.zeros((2, 6, 8, 3), np.uint8)
    arrays["y_test"] = np.zeros(2, np.int64)
    arrays["x_train"] = np.zeros((3, 6, 8, 3), np.uint8)
    arrays["y_train"] = np.zeros(3, np.int64)
    arrays["x_val"] = np.zeros((2, 3, 8, 3), np.uint8)
    arrays["y_val"] = np.zeros(2, np.int64)
    with pytest.raises(InvalidInputError, match="different image shapes"):
        load_npz(_save(tmp_path, **arrays))


@pytest.mark.parametrize(
    ("change", "key", "match"),
    [
        (lambda a: a.pop("y_test"), "y_test", "lacks"),
        (lambda a: a.update(y_train=a["y_train"][:-1]), "y_train", "labels for"),
        (lambda a: a.update(y_train=a["y_train"].astype(np.float32)), "y_train", "integer"),
        (
            lambda a: a.update(y_test=a["y_test"] + 5, class_names=np.array(["a", "b", "c"])),
            "y_test",
            "outside",
        ),
        (lambda a: a.update(y_test=a["y_test"] - 1), "y_test", "negative"),
        (lambda a: a.update(class_names=np.array(["a", "b"])), "y_train", "outside"),
        (lambda a: a.update(class_names=np.array(["a", "a", "b"])), "class_names", "repeats"),
        (
            lambda a: a.update(x_train=np.full((6, 8, 8, 3), np.nan, np.float32)),
            "x_train",
            "NaN",
        ),
        (lambda a: a.update(x_train=np.full((6, 8, 8, 3), 7.0)), "x_train", "divide"),
        (lambda a: a.update(x_test=np.zeros((4, 8), np.uint8)), "x_test", "3-D"),
        (lambda a: a.update(x_test=np.zeros((4, 8, 8, 4), np.uint8)), "x_test", "channel"),
        (lambda a: a.update(x_test=np.full((4, 8, 8, 3), 300)), "x_test", "0..255"),
        (lambda a: a.update(y_train=np.eye(3)[a["y_train"]]), "y_train", "argmax"),
        (lambda a: a.update(x_val=a["x_test"]), "y_val", "y_val"),
        (lambda a: a.update(y_val=a["y_test"]), "y_val", "x_val"),
        (lambda a: a.update(ids_test=np.array(["a", "a", "b", "c"])), "ids_test", "repeats"),
        (lambda a: a.update(ids_test=np.array(["a", "b"])), "ids_test", "entries"),
        (lambda a: a.update(scenario_test=np.array([1.0, 2, 3, 4])), "scenario_test", "strings"),
        (lambda a: a.update(x_train=np.zeros((0, 8, 8, 3), np.uint8)), "x_train", "no images"),
        (lambda a: a.update(layout=np.array("HWC")), "layout", "NHWC"),
    ],
)
def test_npz_bad_input(tmp_path: Path, change: object, key: str, match: str) -> None:
    arrays = _arrays()
    change(arrays)  # type: ignore[operator]
    with pytest.raises(InvalidInputError, match=match) as err:
        load_npz(_save(tmp_path, **arrays))
    assert key in str(err.value)


def test_npz_object_array_refused(tmp_path: Path) -> None:
    arrays = _arrays()
    arrays["class_names"] = np.array(["a", "b", "c"], dtype=object)
    with pytest.raises(InvalidInputError, match="dtype=object") as err:
        load_npz(_save(tmp_path, **arrays))
    assert "class_names" in str(err.value)


def test_npz_unknown_key_warns(tmp_path: Path) -> None:
    arrays = _arrays()
    with pytest.warns(UserWarning, match="x_valid"):
        load_npz(_save(tmp_path, **arrays, x_valid=arrays["x_test"]))


def test_npz_not_an_archive(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="does not exist"):
        load_npz(tmp_path / "missing.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"definitely not a zip file")
    with pytest.raises(InvalidInputError, match=r"junk\.npz"):
        load_npz(junk)
    single = tmp_path / "single.npy"
    np.save(single, np.zeros(3))
    with pytest.raises(InvalidInputError, match="single array"):
        load_npz(single)
