"""Robust intensity normalization, computed once and mapped back on output."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

LOW_PERCENTILE = 0.1
HIGH_PERCENTILE = 99.9


@dataclass(frozen=True)
class Normalization:
    """``normalized = (raw - low) / (high - low)``; ``raw_min``/``raw_max`` keep the input's range.

    ``low``/``high`` are the 0.1/99.9 percentiles of the input (robust to hot pixels).
    """

    low: float
    high: float
    raw_min: float
    raw_max: float

    @classmethod
    def fit(cls, data: np.ndarray) -> Normalization:
        # Subsample big stacks: percentiles of ~4M values are exact enough and fast.
        flat = data.reshape(-1)
        step = max(1, flat.size // 4_000_000)
        sample = np.asarray(flat[::step], dtype=np.float64)
        return cls.from_sample(sample, float(np.min(data)), float(np.max(data)))

    @classmethod
    def from_sample(cls, sample: np.ndarray, raw_min: float, raw_max: float) -> Normalization:
        """:meth:`fit` from its subsample (float64) and the data's minimum and maximum."""
        low, high = np.percentile(sample, [LOW_PERCENTILE, HIGH_PERCENTILE])
        if not high > low:  # nearly constant stack with a few outliers: fall back to the full range
            low, high = raw_min, raw_max
        return cls(float(low), float(high), raw_min, raw_max)

    @property
    def span(self) -> float:
        return self.high - self.low

    def apply(self, data: np.ndarray) -> np.ndarray:
        out = np.asarray(data, dtype=np.float32) - np.float32(self.low)
        out /= np.float32(self.span)
        return out

    def invert(self, data: np.ndarray) -> np.ndarray:
        out = np.asarray(data, dtype=np.float32) * np.float32(self.span)
        out += np.float32(self.low)
        return out

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, float]) -> Normalization:
        return cls(**{k: float(d[k]) for k in ("low", "high", "raw_min", "raw_max")})
