"""The orchestrator: the only package that knows run folders.

It calls the stage packages (``failures``, ``features``, ``clustering``, ``explain``,
``selection``, ``retraining``, ``evaluation``), caches their results in a run folder and
writes the artifacts:

* :mod:`dnnsafety.pipeline.run` - :class:`Pipeline`: the stages (train, evaluate, analyze),
  their fingerprints and caching;
* :mod:`dnnsafety.pipeline.analyze` - the root-cause analyses (HUDD, SAFE) in the
  :data:`~dnnsafety.pipeline.analyze.ANALYSES` registry;
* :mod:`dnnsafety.pipeline.spaces` - the analysis feature space with the pool projected into it;
* :mod:`dnnsafety.pipeline.retrain` - selection, labelling and retraining of a run folder;
* :mod:`dnnsafety.pipeline.labels` - the selection handed out for labelling and read back.

Stage packages never import this package.
"""

from dnnsafety.pipeline.run import Pipeline, StageOutcome

__all__ = ["Pipeline", "StageOutcome"]
