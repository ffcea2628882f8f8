"""Models given as ONNX files, run with onnxruntime (black-box use only).

A user without access to the PyTorch internals of a model can still run the black-box
analysis: it needs only the model's outputs. :class:`OnnxClassifier` wraps an inference
session as an ``nn.Module`` whose forward returns the logits (no gradients), so prediction and
evaluation work unchanged; the white-box analysis refuses it with a clear message.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from dnnsafety.exceptions import ModelLoadError

log = logging.getLogger(__name__)


class OnnxClassifier(nn.Module):
    """An ONNX image classifier (``N x C x H x W`` float32 -> ``N x classes`` logits).

    Parameters
    ----------
    path
        The ``.onnx`` file. Its first input takes the images, its first output the logits.
    """

    def __init__(self, path: str | Path) -> None:
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
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        log.info("ONNX model %s: input %s", p, self.session.get_inputs()[0].shape)

    def forward(self, x: Tensor) -> Tensor:
        batch = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
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
                f"The ONNX model's first output must be N x classes logits; got {out.shape}."
            )
        return torch.from_numpy(out.astype(np.float32, copy=False))
