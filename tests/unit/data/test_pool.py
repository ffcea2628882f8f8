"""Pool stores and lazy pool images: round-trips, lazy reads, simulated pools."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from dnnsafety.compute import make_executor
from dnnsafety.data.pool import (
    ArrayImages,
    FolderImages,
    NpzImages,
    PoolStoreWriter,
    convert_pool,
    open_pool,
    open_pool_store,
    write_signs_pool,
)
from dnnsafety.exceptions import ConfigError, InvalidInputError


def _images(n: int, c: int = 3, size: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, c, size, size)).astype(np.float32)


@pytest.mark.parametrize("dtype", ["float32", "float16", "uint8"])
def test_a_store_round_trips_images_ids_labels_and_metadata(tmp_path, dtype):
    x = _images(23)
    ids = [f"img-{i}" for i in range(23)]
    writer = PoolStoreWriter(
        tmp_path / "p.zarr",
        23,
        (3, 6, 6),
        dtype=dtype,
        chunk_rows=5,
        class_names=("a", "b"),
        labels=True,
        meta={"fog": "float64", "side": "str"},
    )
    import pandas as pd

    for a in range(0, 23, 10):  # two chunks per write, as a parallel writer would
        b = min(a + 10, 23)
        meta = pd.DataFrame({"fog": np.arange(a, b) / 10, "side": ["top"] * (b - a)})
        writer.write(a, x[a:b], ids[a:b], labels=np.arange(a, b) % 2, meta=meta)
    store = writer.finish()
    assert len(store) == 23 and store.class_names == ("a", "b")
    assert store.ids().tolist() == ids
    assert store.labels().tolist() == (np.arange(23) % 2).tolist()
    meta = store.metadata()
    assert meta["fog"].tolist() == pytest.approx(np.arange(23) / 10)
    assert set(meta["side"]) == {"top"}
    got = store.images[3:17]
    assert got.dtype == torch.float32 and got.shape == (14, 3, 6, 6)
    tol = {"float32": 0, "float16": 1e-3, "uint8": 0.5 / 255 + 1e-7}[dtype]
    assert np.abs(got.numpy() - x[3:17]).max() <= tol
    if dtype == "uint8":  # stored as round(255 x): reads back exactly k / 255
        assert np.allclose(got.numpy() * 255, np.rint(x[3:17] * 255), atol=1e-4)
    copy = pickle.loads(pickle.dumps(store.images))
    assert torch.equal(copy[0:4], store.images[0:4])
    assert len(pickle.dumps(store.images)) < 2000  # the path, not the pixels


def test_an_unfinished_store_is_refused(tmp_path):
    writer = PoolStoreWriter(tmp_path / "p.zarr", 4, (1, 2, 2))
    writer.write(0, _images(2, 1, 2), ["a", "b"])
    with pytest.raises(InvalidInputError, match="incomplete"):
        open_pool_store(tmp_path / "p.zarr")
    with pytest.raises(ConfigError, match="exists"):
        PoolStoreWriter(tmp_path / "p.zarr", 4, (1, 2, 2))
    with pytest.raises(InvalidInputError, match="not a pool store"):
        open_pool_store(tmp_path / "missing.zarr")


def test_lazy_rows_take_slices_only():
    rows = ArrayImages(_images(10))
    with pytest.raises(InvalidInputError, match="row slices"):
        rows[[1, 2]]
    assert rows[8:100].shape == (2, 3, 6, 6)
    taken = rows.take(np.array([7, 2, 9, 2]))
    assert torch.equal(taken, torch.from_numpy(_images(10)[[7, 2, 9, 2]]))
    bad = ArrayImages(np.full((3, 1, 2, 2), 2.0, dtype=np.float32))
    with pytest.raises(InvalidInputError, match="row 1 holds values outside"):
        bad[1:3]


def test_an_uncompressed_npz_is_memory_mapped_inside_the_zip(tmp_path):
    x = (_images(12, 3, 5) * 255).astype(np.uint8).transpose(0, 2, 3, 1)  # NHWC
    np.savez(tmp_path / "d.npz", x_pool=x, ids_pool=np.array([f"p{i}" for i in range(12)]))
    rows = NpzImages(tmp_path / "d.npz")
    assert not rows.compressed and rows.shape == (12, 3, 5, 5)
    block = rows[4:9]
    assert isinstance(rows._map, np.memmap)
    assert np.array_equal(block.numpy(), x[4:9].transpose(0, 3, 1, 2) / np.float32(255))
    pool = open_pool(tmp_path / "d.npz")
    assert pool.ids.tolist() == [f"p{i}" for i in range(12)]


def test_a_compressed_npz_is_read_with_a_warning_and_the_same_values(tmp_path):
    x = _images(9, 1, 4)
    np.savez_compressed(tmp_path / "d.npz", x_pool=x[:, 0])  # N x H x W greyscale
    with pytest.warns(UserWarning, match="compressed"):
        rows = NpzImages(tmp_path / "d.npz")
    assert rows.shape == (9, 1, 4, 4)
    assert np.array_equal(rows[5:8].numpy(), x[5:8])
    streamed = torch.cat([b for _, b in rows.blocks(4)])
    assert np.array_equal(streamed.numpy(), x)
    with pytest.warns(UserWarning):
        store = convert_pool(
            rows,
            open_pool(tmp_path / "d.npz").ids,
            tmp_path / "c.zarr",
            dtype="float32",
            chunk_rows=4,
        )
    assert np.array_equal(store.images[0:9].numpy(), x)
    assert store.ids()[3] == "pool/3"


def test_an_image_folder_is_listed_then_decoded_per_slice(tmp_path):
    pool = tmp_path / "data" / "pool"
    (pool / "sub").mkdir(parents=True)
    pixels = (_images(3, 3, 4) * 255).astype(np.uint8)
    for i, name in enumerate(["b.png", "a.png", "sub/c.png"]):
        Image.fromarray(pixels[i].transpose(1, 2, 0)).save(pool / name)
    rows = FolderImages(tmp_path / "data")
    assert rows.ids().tolist() == ["pool/a.png", "pool/b.png", "pool/sub/c.png"]
    assert np.array_equal(rows[0:1].numpy()[0] * 255, pixels[1].astype(np.float32))
    Image.fromarray(np.zeros((5, 5, 3), dtype=np.uint8)).save(pool / "d.png")
    rows = open_pool(tmp_path / "data").images
    with pytest.raises(InvalidInputError, match=r"d\.png is 5x5"):
        rows[0:4]


def test_the_simulated_pool_is_the_same_on_every_scheduler(tmp_path):
    local = write_signs_pool(tmp_path / "a.zarr", 300, seed=4, chunk_rows=64, size=16)
    with make_executor("threads", 2) as executor:
        threaded = write_signs_pool(
            tmp_path / "b.zarr", 300, seed=4, chunk_rows=64, size=16, executor=executor
        )
    assert torch.equal(local.images[0:300], threaded.images[0:300])
    assert local.ids().tolist() == threaded.ids().tolist()
    assert local.ids()[0] == "signs-pool-000000"
    assert np.array_equal(local.labels(), threaded.labels())
    assert set(local.scenarios()) >= {"nominal", "night", "fog"}
    assert "brightness" in local.metadata().columns
    other = write_signs_pool(tmp_path / "c.zarr", 300, seed=5, chunk_rows=64, size=16)
    assert not torch.equal(local.images[0:64], other.images[0:64])
    # chunks are seeded apart: no two task chunks repeat each other
    assert not torch.equal(local.images[0:64], local.images[128:192])
    with pytest.raises(ConfigError, match="multiple of chunk_rows"):
        write_signs_pool(tmp_path / "d.zarr", 10, chunk_rows=4, task_rows=6)
