"""Models given as ONNX files, run with onnxruntime (black-box use only).

A user without access to the PyTorch internals of a model can still run the black-box
analysis: it needs only the model's outputs. :class:`OnnxClassifier` wraps an inference
session as an ``nn.Module`` whose forward returns the model's first output (no gradients), so
prediction and evaluation work unchanged; the white-box analysis refuses it with a clear
message.

The input signature is read and followed: a fixed batch size (often 1) runs the images in
batches of that size, ``float16`` / ``float64`` / ``uint8`` inputs get the images cast (uint8
as 0..255), and a channels-last input (``N x H x W x C``) gets them transposed. The output
width is checked against the number of classes when the signature fixes it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from dnnsafety.exceptions import ModelLoadError
from dnnsafety.models.batching import run_in_batches

log = logging.getLogger(__name__)

_DTYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8,
}


def _fits(signature: Sequence[Any], dims: Sequence[int]) -> bool:
    """Whether every fixed dimension of ``signature`` equals the one in ``dims``."""
    return all(not isinstance(s, int) or s == d for s, d in zip(signature, dims, strict=True))


class OnnxClassifier(nn.Module):
    """An ONNX image classifier: ``N x C x H x W`` float images in [0, 1] -> ``N x outputs``.

    Parameters
    ----------
    path
        The ``.onnx`` file. Its first input takes the images, its first output the scores.
    num_classes
        When given, a fixed output width that does not fit is refused at once.
    """

    def __init__(self, path: str | Path, num_classes: int | None = None) -> None:
        super().__init__()
        try:
            import onnxruntime as ort
        except ImportError:
            raise ModelLoadError(
                "ONNX models need onnxruntime: `.venv/bin/pip install onnxruntime`."
            ) from None
        p = Path(path)
        if not p.is_file():
            raise ModelLoadError(f"ONNX file {str(p)!r} does not exist.")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(p), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelLoadError(
                f"{str(p)!r} is not a loadable ONNX model ({str(exc).splitlines()[0]})."
            ) from None
        self.path = p
        inp, out = self.session.get_inputs()[0], self.session.get_outputs()[0]
        self.input_name, self.output_name = inp.name, out.name
        self.input_shape: list[Any] = list(inp.shape)
        if len(self.input_shape) != 4:
            raise ModelLoadError(
                f"The ONNX model's input {inp.name!r} is shaped {inp.shape}; an image "
                "classifier takes N x C x H x W (or N x H x W x C) images."
            )
        if inp.type not in _DTYPES:
            raise ModelLoadError(
                f"The ONNX model's input {inp.name!r} has type {inp.type}; supported: "
                f"{', '.join(_DTYPES)}."
            )
        self.input_dtype = _DTYPES[inp.type]
        first = self.input_shape[0]
        self.batch: int | None = first if isinstance(first, int) and first > 0 else None
        out_shape = list(out.shape)
        if num_classes is not None and len(out_shape) == 2 and isinstance(out_shape[1], int):
            width = out_shape[1]
            if width != num_classes and not (width == 1 and num_classes == 2):
                raise ModelLoadError(
                    f"The ONNX model's output {out.name!r} is shaped {out.shape}: {width} "
                    f"scores per image, but the data has {num_classes} classes. Use the model "
                    "trained for these classes."
                )
        self.channels_last: bool | None = None
        log.info(
            "ONNX model %s: input %s %s %s, output %s %s",
            p,
            inp.name,
            inp.type,
            inp.shape,
            out.name,
            out.shape,
        )

    def _layout(self, x: Tensor) -> bool:
        """True when the model wants channels last; decided from the first batch's shape."""
        if self.channels_last is None:
            c, h, w = (int(d) for d in x.shape[1:])
            sig = self.input_shape[1:]
            if _fits(sig, (c, h, w)):
                self.channels_last = False
            elif _fits(sig, (h, w, c)):
                self.channels_last = True
                log.info("ONNX model %s takes channels-last (N x H x W x C) input", self.path)
            else:
                raise ModelLoadError(
                    f"The ONNX model's input is shaped {self.input_shape}, but the images are "
                    f"{c} x {h} x {w} (C x H x W). Resize them with --image-size, or set "
                    "data.channels, to what the model takes."
                )
        return self.channels_last

    def _run(self, x: Tensor) -> Tensor:
        arr = x.detach().cpu().numpy()
        if self._layout(x):
            arr = arr.transpose(0, 2, 3, 1)
        if self.input_dtype is np.uint8:
            arr = np.round(arr * 255.0)
        batch = np.ascontiguousarray(arr, dtype=self.input_dtype)
        try:
            (out,) = self.session.run([self.output_name], {self.input_name: batch})
        except Exception as exc:
            raise ModelLoadError(
                f"The ONNX model {str(self.path)!r} failed on a batch shaped "
                f"{tuple(batch.shape)}: {str(exc).splitlines()[0]}"
            ) from None
        out = np.asarray(out)
        if out.ndim != 2:
            raise ModelLoadError(
                f"The ONNX model's first output must be N x classes scores; got {out.shape}."
            )
        return torch.from_numpy(out.astype(np.float32, copy=False))

    def forward(self, x: Tensor) -> Tensor:
        if self.batch is None or len(x) == self.batch:
            return self._run(x)
        return run_in_batches(self._run, x, self.batch)
