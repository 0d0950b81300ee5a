"""The end-to-end pipeline: corpus to evaluated, merged, served models, resumably."""
