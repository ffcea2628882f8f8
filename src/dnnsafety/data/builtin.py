"""Built-in datasets and the dispatcher from a :class:`DataConfig` to a :class:`Dataset`.

* ``signs`` - the procedural traffic-sign simulator (:mod:`dnnsafety.sim`).
* ``fashion-mnist`` - the real Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package,
  with injected failure scenarios (:mod:`dnnsafety.data.inject`).
* ``digits`` - scikit-learn's 8x8 digits with injected scenarios; tiny and fast, for tests.

User data: ``folder`` (``root/<split>/<class>/<file>``) and ``npz``.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dnnsafety.config import DataConfig
from dnnsafety.data.dataset import Dataset, make_split
from dnnsafety.data.inject import InjectionConfig, inject
from dnnsafety.exceptions import ConfigError, InvalidInputError
from dnnsafety.progress import advance, progress_bar
from dnnsafety.registry import Registry

Loader = Callable[[DataConfig, int], Dataset]
DATASETS: Registry[Loader] = Registry("dataset")

FASHION_DIRS = ("/usr/share/datasets/fashion-mnist",)
FASHION_CLASSES = (
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
)


def _sizes(cfg: DataConfig, defaults: dict[str, int]) -> dict[str, int]:
    given = {"train": cfg.n_train, "val": cfg.n_val, "test": cfg.n_test, "pool": cfg.n_pool}
    out = {}
    for split, default in defaults.items():
        n = given[split]
        if n < 0:
            raise ConfigError(f"data.n_{split} must be >= 0. Got {n}.")
        out[split] = n or default
    return out


@DATASETS.register("signs", "Simulated traffic signs, 10 classes, rare night/fog/occlusion/tilt")
def load_signs(cfg: DataConfig, seed: int) -> Dataset:
    from dnnsafety.data.signs import generate_signs
    from dnnsafety.sim import ScenarioConfig

    sizes = _sizes(cfg, {"train": 20000, "val": 2000, "test": 5000, "pool": 10000})
    scen = ScenarioConfig.from_dict(cfg.scenarios) if cfg.scenarios else ScenarioConfig()
    with progress_bar(total=sum(sizes.values()), desc="render signs", unit="img") as bar:
        return generate_signs(
            sizes, scen, size=cfg.image_size or 32, seed=seed, progress=advance(bar)
        )


def _read_idx(path: Path) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise InvalidInputError(
            f"Cannot read {str(path)!r} ({exc}); reinstall the package."
        ) from None
    if len(raw) < 8 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise InvalidInputError(f"{str(path)!r} is not an unsigned-byte IDX file.")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise InvalidInputError(f"{str(path)!r} is truncated: expected shape {dims}.")
    return data.reshape(dims)


def fashion_mnist_dir() -> Path:
    """The folder holding Fashion-MNIST's gzipped IDX files."""
    candidates = [os.environ.get("DNNSAFETY_FASHION_MNIST_DIR", ""), *FASHION_DIRS]
    for c in candidates:
        if c and (Path(c) / "train-images-idx3-ubyte.gz").is_file():
            return Path(c)
    raise InvalidInputError(
        "Fashion-MNIST is not installed. Install the Debian package with "
        "`sudo apt-get install dataset-fashion-mnist` (make demo / make test do it), or point "
        "DNNSAFETY_FASHION_MNIST_DIR at a folder with the four *-ubyte.gz files."
    )


def _with_injection(
    name: str,
    class_names: tuple[str, ...],
    arrays: dict[str, tuple[torch.Tensor, np.ndarray]],
    cfg: DataConfig,
    seed: int,
) -> Dataset:
    inj = InjectionConfig.from_dict(cfg.scenarios)
    splits = {}
    for i, (split, (images, labels)) in enumerate(arrays.items()):
        rng = np.random.default_rng([seed, 7919, i])
        out, tags, meta = inject(images, split, inj, rng)
        ids = [f"{name}-{split}-{j:06d}" for j in range(len(labels))]
        splits[split] = make_split(split, ids, out, labels, tags, meta)
    return Dataset(name, class_names, splits)


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    if size <= 0 or images.shape[-1] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True).clamp_(0, 1)


@DATASETS.register("fashion-mnist", "Real Fashion-MNIST (28x28) with injected failure scenarios")
def load_fashion_mnist(cfg: DataConfig, seed: int) -> Dataset:
    root = fashion_mnist_dir()
    x_tr = _read_idx(root / "train-images-idx3-ubyte.gz")
    y_tr = _read_idx(root / "train-labels-idx1-ubyte.gz").astype(np.int64)
    x_te = _read_idx(root / "t10k-images-idx3-ubyte.gz")
    y_te = _read_idx(root / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    sizes = _sizes(cfg, {"train": 45000, "val": 5000, "test": 10000, "pool": 10000})
    if sizes["train"] + sizes["val"] + sizes["pool"] > len(y_tr) or sizes["test"] > len(y_te):
        raise ConfigError(
            "Fashion-MNIST has 60,000 training images (shared by train, val and pool) and "
            "10,000 test images; lower data.n_train / n_val / n_pool / n_test."
        )
    order = np.random.default_rng([seed, 60000]).permutation(len(y_tr))
    cuts = np.cumsum([sizes["train"], sizes["val"], sizes["pool"]])
    parts = {
        "train": order[: cuts[0]],
        "val": order[cuts[0] : cuts[1]],
        "pool": order[cuts[1] : cuts[2]],
    }
    test_idx = np.random.default_rng([seed, 10000]).permutation(len(y_te))[: sizes["test"]]

    def tensor(x: np.ndarray) -> torch.Tensor:
        return _resize(torch.from_numpy(x.copy()).float().div_(255.0)[:, None], cfg.image_size)

    arrays = {s: (tensor(x_tr[idx]), y_tr[idx]) for s, idx in parts.items()}
    arrays["test"] = (tensor(x_te[test_idx]), y_te[test_idx])
    arrays = {s: arrays[s] for s in ("train", "val", "test", "pool")}
    return _with_injection("fashion-mnist", FASHION_CLASSES, arrays, cfg, seed)


@DATASETS.register("digits", "scikit-learn's 8x8 digits (1,797 images), injected scenarios")
def load_digits(cfg: DataConfig, seed: int) -> Dataset:
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0)[:, None]
    x = _resize(x, cfg.image_size)
    y = bunch.target.astype(np.int64)
    n = len(y)
    defaults = {"train": 1000, "val": 150, "test": 350, "pool": n - 1500}
    sizes = _sizes(cfg, defaults)
    if sum(sizes.values()) > n:
        raise ConfigError(f"digits has {n} images in all; lower data.n_* so they fit.")
    order = np.random.default_rng([seed, n]).permutation(n)
    arrays, start = {}, 0
    for split in ("train", "val", "test", "pool"):
        idx = order[start : start + sizes[split]]
        arrays[split] = (x[torch.from_numpy(idx)], y[idx])
        start += sizes[split]
    return _with_injection("digits", tuple(str(i) for i in range(10)), arrays, cfg, seed)


@DATASETS.register("folder", "Your images: root/<split>/<class>/<file> (set data.path)")
def load_folder(cfg: DataConfig, seed: int) -> Dataset:
    from dnnsafety.data.imagefolder import load_image_folder

    del seed
    if not cfg.path:
        raise ConfigError("data.name = 'folder' needs data.path = the image folder's root.")
    with progress_bar(desc="load images", unit="img") as bar:
        return load_image_folder(
            cfg.path,
            image_size=cfg.image_size or None,
            channels=cfg.channels or None,
            metadata_csv=cfg.metadata_csv or None,
            on_error="skip" if cfg.skip_bad_files else "raise",
            progress=advance(bar),
        )


@DATASETS.register("npz", "Your arrays: an .npz with x_train, y_train, x_test, y_test, ...")
def load_npz_dataset(cfg: DataConfig, seed: int) -> Dataset:
    from dnnsafety.data.npz import load_npz

    del seed
    if not cfg.path:
        raise ConfigError("data.name = 'npz' needs data.path = the .npz file.")
    return load_npz(cfg.path)


def _check_data_config(cfg: DataConfig, seed: int) -> None:
    """Refuse values that would fail deep inside a loader, or silently mean something else."""
    from dnnsafety.data.holdout import check_val_fraction

    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be an int >= 0. Got {seed!r}.")
    if cfg.image_size < 0:
        raise ConfigError(
            f"data.image_size must be >= 0 (0: the dataset's own size). Got {cfg.image_size}."
        )
    if cfg.channels not in (0, 1, 3):
        raise ConfigError(
            f"data.channels must be 1 (greyscale), 3 (RGB) or 0 (as the images are). "
            f"Got {cfg.channels}."
        )
    check_val_fraction(cfg.val_fraction)


def load_dataset(cfg: DataConfig, seed: int = 0) -> Dataset:
    """Load the dataset a configuration names.

    A dataset without a ``val`` split gets one held out of its training images
    (``cfg.val_fraction``, stratified by class, drawn with ``seed``).
    """
    from dnnsafety.data.holdout import hold_out_validation

    _check_data_config(cfg, seed)  # before a slow load, not after
    return hold_out_validation(DATASETS.get(cfg.name)(cfg, seed), cfg.val_fraction, seed)


def data_fingerprint(cfg: DataConfig) -> list[object]:
    """What identifies the data beyond the config: file sizes and times for user data."""
    if cfg.name not in ("folder", "npz") or not cfg.path:
        return []
    p = Path(cfg.path)
    if p.is_file():
        st = p.stat()
        return [str(p.resolve()), st.st_size, st.st_mtime_ns]
    if p.is_dir():
        entries: list[object] = []
        for f in sorted(p.rglob("*")):
            if f.is_file():
                st = f.stat()
                entries.append([f.relative_to(p).as_posix(), st.st_size, st.st_mtime_ns])
        return entries
    return []
