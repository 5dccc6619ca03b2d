"""stats group: descriptive statistics, tests, sampling, window functions and value distributions."""

from pgcode.groups.stats import describe, inference, values, window

__all__ = ["describe", "inference", "values", "window"]
