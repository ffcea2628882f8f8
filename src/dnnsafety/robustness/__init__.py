"""Robustness: corruptions, missing data and hardware faults; sweeps and hardening.

* :mod:`.corruptions` - the corruption registry (ImageNet-C, missing data, injected scenarios).
* :mod:`.faults` - fault injection as context managers that restore the model.
* :mod:`.ranger` - Ranger activation clipping (Chen et al., DSN 2021) as a model wrapper.
* :mod:`.sweep` - accuracy per corruption x severity, mCE, missing-rate curves, SDC campaigns.
* :mod:`.augmix` - AugMix fine-tuning with its consistency loss (Hendrycks et al., ICLR 2020);
  :mod:`.augmix_ops` - its augmentation operations.
"""
