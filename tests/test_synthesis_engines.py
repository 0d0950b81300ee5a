"""Engines: the hf generator runs for real; the vLLM processor is built, not run; the OpenAI request parts
(its client runs against loopback servers in ``test_synthesis_chat_client.py``)."""

import pandas as pd
import pytest

from embedforge.synthesis.engines import (
    GeneratorConfig,
    HFGenerator,
    openai_headers,
    openai_payload,
    openai_text,
    vllm_processor_config,
    vllm_sampling_params,
)
from embedforge.synthesis.prompts import QUERY_SCHEMA


def test_hf_generator_samples_and_retries_rejected_rows():
    calls = []

    def reject_all(row, text):
        calls.append(row["id"])
        return "malformed_json"

    generator = HFGenerator("tiny-qwen3-random", max_new_tokens=4, temperature=0.8, top_p=0.95, max_attempts=2, validator=reject_all)
    batch = pd.DataFrame({"id": ["a", "b", "c"], "prompt": ["write json", "", "more json"], "generation_seed": [5, 6, 7]})
    out = generator(batch)
    assert list(out["attempts"]) == [2, 0, 2]
    assert out["generated_text"][1] == ""
    assert isinstance(out["generated_text"][0], str) and out["generated_text"][0]
    assert calls == ["a", "c", "a", "c"]
    generator.validator = None  # without a validator, one generation per row
    assert list(generator(batch)["attempts"]) == [1, 0, 1]


def test_vllm_processor_config_comes_from_the_config():
    config = GeneratorConfig.model_validate(
        {"engine": "vllm", "model": "Qwen/Qwen3-32B", "vllm": {"accelerator_type": "H100", "concurrency": 3, "tensor_parallel_size": 4, "batch_size": 32, "engine_kwargs": {"gpu_memory_utilization": 0.85}}}
    )
    processor_config = vllm_processor_config(config)
    assert processor_config.model_source == "Qwen/Qwen3-32B"
    assert processor_config.accelerator_type == "H100"
    assert processor_config.concurrency == 3 and processor_config.batch_size == 32
    assert processor_config.should_continue_on_error is True
    assert processor_config.engine_kwargs["tensor_parallel_size"] == 4
    assert processor_config.engine_kwargs["gpu_memory_utilization"] == 0.85
    params = vllm_sampling_params(config, {"prompt": "x", "generation_seed": 9}, QUERY_SCHEMA)
    assert params["structured_outputs"] == {"json": QUERY_SCHEMA}
    assert params["seed"] == 9 and params["max_tokens"] == config.max_new_tokens
    assert vllm_sampling_params(config, {"prompt": "", "generation_seed": 9}, QUERY_SCHEMA)["max_tokens"] == 1


def test_vllm_processor_builds_without_running(local_ray):
    from embedforge.synthesis.engines import build_generation_stage

    config = GeneratorConfig.model_validate(
        {"engine": "vllm", "model": "/nonexistent/qwen3", "vllm": {"concurrency": 2, "tensor_parallel_size": 2, "accelerator_type": "H100"}}
    )
    processor = build_generation_stage(config, schema=lambda row: QUERY_SCHEMA).processor
    assert [type(stage).__name__ for stage in processor.stages.values()] == ["ChatTemplateStage", "TokenizeStage", "vLLMEngineStage", "DetokenizeStage"]
    engine = processor.stages["vLLMEngineStage"]
    assert engine.fn_constructor_kwargs["engine_kwargs"]["tensor_parallel_size"] == 2
    assert engine.map_batches_kwargs["compute"].max_size == 2
    assert engine.map_batches_kwargs["accelerator_type"] == "H100"


def test_openai_headers_and_payload(monkeypatch):
    monkeypatch.setenv("EMBEDFORGE_TEST_KEY", "sk-test")
    config = GeneratorConfig.model_validate(
        {"engine": "openai", "model": "served", "openai": {"url": "http://127.0.0.1:9/v1/chat/completions", "api_key_env": "EMBEDFORGE_TEST_KEY", "qps": 5, "max_retries": 4}}
    )
    assert openai_headers(config) == {"Authorization": "Bearer sk-test"}
    assert openai_headers(config.model_copy(update={"openai": config.openai.model_copy(update={"api_key_env": None})})) == {}
    payload = openai_payload(config, {"prompt": "hi", "generation_seed": 3})
    assert payload["model"] == "served" and payload["messages"][-1] == {"role": "user", "content": "hi"}
    assert payload["response_format"] == {"type": "json_object"} and payload["seed"] == 3
    assert openai_text({"choices": [{"message": {"content": '{"query": "x"}'}}]}) == '{"query": "x"}'
    assert openai_text({"error": "bad"}) == "" and openai_text(None) == ""


def test_unknown_engine_is_a_config_error():
    with pytest.raises(Exception, match="engine"):
        GeneratorConfig.model_validate({"engine": "tgi"})
