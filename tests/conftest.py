"""Shared fixtures: real tiny Qwen3 models, the packaged MiniLM, and the shared data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    from embedforge.paths import shared_data_dir

    return shared_data_dir()


@pytest.fixture(scope="session")
def tiny_embedder_dir(tmp_path_factory) -> Path:
    from embedforge.models.qwen3 import build_embedder

    return build_embedder("tiny", max_length=64).save(tmp_path_factory.mktemp("tiny-embedder"))


@pytest.fixture(scope="session")
def tiny_reranker_dir(tmp_path_factory) -> Path:
    from embedforge.models.qwen3 import build_reranker

    return build_reranker("tiny", max_length=256).save(tmp_path_factory.mktemp("tiny-reranker"))


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    from embedforge.models.registry import resolve_model

    return resolve_model("all-MiniLM-L6-v2")


@pytest.fixture(scope="module")
def local_ray():
    """A private local Ray instance for one test module, shut down afterwards.

    Logical CPUs are over-provisioned (4 on a 2-core machine) so fractional actors and the
    read stage can run side by side; the dashboard is off to save memory.
    """
    import ray

    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.1")
    if ray.is_initialized():
        ray.shutdown()
    context = ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield context
    ray.shutdown()
