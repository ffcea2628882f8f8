"""Exceptions raised by dnnsafety.

Every error a user can cause derives from :class:`DnnSafetyError`; the CLI shows its message
as one line (the traceback only under ``--debug``). Messages name the problem and the fix.
"""

from __future__ import annotations


class DnnSafetyError(Exception):
    """Base class of every error dnnsafety raises on purpose."""


class InvalidInputError(DnnSafetyError, ValueError):
    """Input data (images, labels, metadata, files) is malformed."""


class ConfigError(DnnSafetyError, ValueError):
    """A configuration value or file is invalid."""


class UnsafeModelError(DnnSafetyError):
    """A model file would need to execute arbitrary code to load."""


class ModelLoadError(DnnSafetyError):
    """A model could not be loaded for another reason."""


class HiddenLabelsError(DnnSafetyError):
    """Code tried to read labels that are held back (the unlabeled pool)."""


class NotFittedError(DnnSafetyError, AttributeError):
    """An estimator was used before ``fit``."""


class RunDirError(DnnSafetyError):
    """A run folder is missing, incomplete or belongs to a different configuration."""
