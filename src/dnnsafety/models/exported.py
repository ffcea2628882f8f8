"""Models saved with ``torch.export.save`` (``.pt2`` archives), TorchScript's successor.

``torch.export.load`` rebuilds the program from JSON and raw tensor files, but it unpickles
tensor subclasses, custom objects and, as a fallback, the sample inputs. Before loading,
:func:`check_export_archive` reads the archive's index and refuses any entry that would be
unpickled, so a ``.pt2`` file runs no pickled code here either.

The loaded program (``ExportedProgram.module()``) is a flat graph: it predicts, and the
black-box analysis works; it has no ``nn.Conv2d`` / ``nn.Linear`` modules, so the white-box
(LRP) analysis does not. It keeps the train/eval mode it was exported in (export in eval mode),
and :class:`ExportedClassifier` lets ``model.eval()`` / ``model.train()`` pass. A program
exported with a fixed batch size is run in batches of that size.
"""

from __future__ import annotations

import io
import json
import logging
import zipfile
from pathlib import Path

import torch
from torch import Tensor, nn

from dnnsafety.exceptions import ModelLoadError, UnsafeModelError
from dnnsafety.models.batching import run_in_batches

log = logging.getLogger(__name__)

_RAW_PREFIXES = ("weight_", "tensor_")


def _names(path: str | Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.namelist()
    except (OSError, zipfile.BadZipFile):
        return []


def sniff_format(path: str | Path) -> str:
    """``"export"`` or ``"torchscript"`` for archives of those kinds, else ``""``."""
    names = _names(path)
    if any(n.endswith("/archive_format") or n == "archive_format" for n in names):
        return "export"
    if any("/code/" in n or n.startswith("code/") for n in names) and any(
        n.endswith("constants.pkl") for n in names
    ):
        return "torchscript"
    return ""


def is_export_archive(path: str | Path) -> bool:
    """Whether ``path`` is a ``torch.export.save`` archive."""
    return sniff_format(path) == "export"


def check_export_archive(path: Path) -> None:
    """Refuse a ``.pt2`` archive with entries that ``torch.export.load`` would unpickle."""
    bad: list[str] = []
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        configs = [
            n for n in names if n.endswith(("_weights_config.json", "_constants_config.json"))
        ]
        if not configs:
            raise ModelLoadError(
                f"{str(path)!r} is a torch.export archive in an old layout; save it again with "
                "torch.export.save from a current PyTorch."
            )
        for name in configs:
            try:
                entries = json.loads(zf.read(name)).get("config", {})
            except (ValueError, AttributeError):
                raise ModelLoadError(f"{str(path)!r}: unreadable index {name}.") from None
            for fqn, meta in entries.items():
                raw = str(meta.get("path_name", "")).startswith(_RAW_PREFIXES)
                if meta.get("use_pickle") or not raw:
                    bad.append(fqn)
        for name in names:
            if "/sample_inputs/" in name or name.startswith("sample_inputs/"):
                try:
                    torch.load(io.BytesIO(zf.read(name)), weights_only=True)
                except Exception:  # any failure: it needs more than tensors
                    bad.append(name)
    if bad:
        raise UnsafeModelError(
            f"Refusing to load {str(path)!r}: it holds pickled Python objects "
            f"({', '.join(bad[:5])}) that would run code on load. Export a model whose weights "
            "are plain tensors."
        )


class ExportedClassifier(nn.Module):
    """A loaded ``torch.export`` program as a module (see the module docstring).

    Parameters
    ----------
    program
        ``ExportedProgram.module()``.
    batch
        The fixed batch size it was exported with, or ``None`` when the batch size is free.
    """

    def __init__(self, program: nn.Module, batch: int | None) -> None:
        super().__init__()
        self.program = program
        self.batch = batch

    def train(self, mode: bool = True) -> ExportedClassifier:
        # the program's mode was fixed at export time; torch refuses to change it
        self.training = mode
        return self

    def forward(self, x: Tensor) -> Tensor:
        if self.batch is None:
            out: Tensor = self.program(x)
            return out
        return run_in_batches(self.program, x, self.batch)


def load_exported(path: str | Path) -> ExportedClassifier:
    """Load a ``torch.export.save`` archive onto the CPU.

    Raises
    ------
    ModelLoadError
        The file is missing or not a loadable archive.
    UnsafeModelError
        The archive holds entries that would be unpickled.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelLoadError(f"torch.export file {str(p)!r} does not exist.")
    if not is_export_archive(p):
        raise ModelLoadError(
            f"{str(p)!r} is not a torch.export archive. Save one with "
            "torch.export.save(torch.export.export(model.eval(), (example,)), 'model.pt2')."
        )
    check_export_archive(p)
    try:
        program = torch.export.load(str(p))
        module = program.module()
    except Exception as exc:  # torch raises many types for a broken archive
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(
            f"Could not load the torch.export archive {str(p)!r}: {first}"
        ) from None
    batch = _fixed_batch(program)
    if batch is not None:
        log.info("torch.export model %s has a fixed batch size of %d", p, batch)
    return ExportedClassifier(module, batch)


def _fixed_batch(program: torch.export.ExportedProgram) -> int | None:
    """The static batch size of the program's first user input, or ``None`` when dynamic."""
    inputs = set(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in inputs:
            val = node.meta.get("val")
            shape = getattr(val, "shape", None)
            if shape is not None and len(shape) and isinstance(shape[0], int):
                return int(shape[0])
            return None
    return None
