"""Readers for corpora, queries, relevance judgements and labelled pairs."""
