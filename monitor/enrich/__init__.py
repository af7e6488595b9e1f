"""Enrichment: HTML → text, hashtags, language, VADER sentiment, privacy.

The one entry point for the service is :class:`Enricher`
(``Enricher.from_config(config).enrich_many(posts)``).
"""

from monitor.enrich.pipeline import Enricher
from monitor.enrich.text import extract_hashtags, html_to_text

__all__ = ["Enricher", "extract_hashtags", "html_to_text"]
