"""The medoid and radius of a root-cause cluster (membership of generated images)."""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist

from dnnsafety.pipeline.rootcauses import medoid_and_radius
from dnnsafety.retraining.rootcauses import RootCause


def test_medoid_and_radius_match_scipy_distances():
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(30, 5))
    d = cdist(rows, rows)
    m = int(np.argmin(d.sum(axis=1)))
    medoid, radius = medoid_and_radius(rows)
    np.testing.assert_allclose(medoid, rows[m])
    np.testing.assert_allclose(radius, np.median(np.delete(d[m], m)))
    cause = RootCause(0, 30, medoid=medoid, radius=radius)
    inside = cause.membership(rows)
    assert (inside <= 1).sum() == 16  # the medoid and the nearer 15 of the 29 others
