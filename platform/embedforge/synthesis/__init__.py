"""Synthetic training data on Ray Data: generation, filtering and hard-negative mining.

Entry points: :func:`embedforge.synthesis.synthesize.run_synthesize`,
:func:`embedforge.synthesis.filter.run_filter` and
:func:`embedforge.synthesis.mine.run_mine`. See ``docs/synthesis.md``.
"""
