"""hashtag-monitor: follow hashtags, score sentiment, keep time series, raise trend alerts."""

__version__ = "0.1.0"
