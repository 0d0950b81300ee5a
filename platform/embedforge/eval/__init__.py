"""Evaluation: the project's own retrieval metrics, and mteb integration."""
