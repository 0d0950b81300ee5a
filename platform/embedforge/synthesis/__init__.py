"""Synthetic training data on Ray Data: generation, filtering and hard-negative mining.

Entry points: :func:`embedforge.synthesis.generate.run_synthesis`,
:func:`embedforge.synthesis.filtering.run_filter` and
:func:`embedforge.synthesis.mining.run_mining`. See ``docs/synthesis.md``.
"""
