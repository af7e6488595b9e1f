"""Enrichment: HTML → text, hashtags, language, VADER sentiment, privacy.

The one entry point for the service is :class:`monitor.enrich.pipeline.Enricher`
(``Enricher.from_config(config).enrich_many(posts)``). Import the submodules
directly: this package keeps its import light because the collectors use
:mod:`monitor.enrich.text`, and :mod:`monitor.config` (which the pipeline
imports) builds its source union from the collectors' registry.
"""
