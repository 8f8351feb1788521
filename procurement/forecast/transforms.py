"""Target transform: divide each series' (differenced) values by their standard deviation
without removing their mean. ``LocalStandardScaler`` would also subtract the mean daily change,
which extrapolates the last two years' drift into every forecast; for prices that are close to a
random walk that drift is noise, and it made the model lose to the naive forecast on real data."""

from __future__ import annotations

import numpy as np
from coreforecast import scalers as core_scalers
from mlforecast.target_transforms import _BaseLocalScaler


class _CoreScaleOnly(core_scalers.LocalStandardScaler):
    def fit(self, ga):  # type: ignore[no-untyped-def]
        super().fit(ga)
        stats = np.array(self.stats_, copy=True)
        stats[:, 0] = 0.0
        stats[:, 1] = np.where(np.isfinite(stats[:, 1]) & (stats[:, 1] > 0), stats[:, 1], 1.0)
        self.stats_ = stats
        return self


class LocalScale(_BaseLocalScaler):
    """Per-series scaling by the standard deviation, no centering."""

    scaler_factory = _CoreScaleOnly
