"""The whole recipe as one Ray job: synthesize, filter, mine, stage 1, stage 2, merge, reranker, evaluate, serve.

Submit: ``ray job submit --working-dir . -- python jobs/pipeline.py --config jobs/configs/qwen3-0.6b.yaml``.
Locally: ``python jobs/pipeline.py --config jobs/configs/quickstart.yaml`` (= ``embedforge run``).
Every stage resumes: re-submitting after a crash skips what is complete.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from embedforge.config import load_config
from embedforge.pipeline.config import PipelineConfig
from embedforge.pipeline.run import run_pipeline

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    config = load_config(parser.parse_args().config, PipelineConfig)
    results = run_pipeline(config)
    print(f"pipeline complete: {', '.join(f'{name}={result.folder}' for name, result in results.items())}")
