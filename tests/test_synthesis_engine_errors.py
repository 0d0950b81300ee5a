"""Engine errors and the per-row brief schema.

The ``vllm`` engine cannot run here (no vLLM, no GPU), so the Ray tests build the real
``ray.data.llm`` processor (``build_processor`` with the job's own config: real chat
template, tokenize and detokenize stages on the tiny Qwen3 tokenizer) and swap only its
vLLM engine stage for :class:`FailingEngineUDF`, which handles rows exactly as Ray 2.60's
``vLLMEngineStageUDF`` does (read from its source) and fails 1 row in 5. The rest of the
job is real: personas, parsing, teacher scores, shards.
"""

import json
import sys
import uuid

import jsonschema
import pyarrow.parquet as pq
import pytest

from embedforge.synthesis.engines import GeneratorConfig, settle_row, shelter_row, vllm_stage
from embedforge.synthesis.parsing import parse_brief
from embedforge.synthesis.prompts import BRIEF_SCHEMA, brief_schema
from embedforge.synthesis.records import QueryRules, apply_brief_step, apply_query_step, brief_step_schema, query_step_prompt
from embedforge.synthesis.shards import PAIR_SCHEMA

PERSONAS = ["A marine biologist", "A retired sailor", "A high school teacher"]
ENGINE_COLUMNS = ("generated_tokens", "prompt_token_ids", "num_input_tokens", "num_generated_tokens", "metrics", "embeddings", "logprobs",
                  "prompt_logprobs", "request_id", "batch_uuid", "time_taken_llm", "params", "messages", "sampling_params", "tokenized_prompt",
                  "__inference_error__", "__data")  # fmt: skip


def test_brief_schema_makes_the_character_one_of_the_row_candidates():
    schema = brief_step_schema({"personas": PERSONAS + [PERSONAS[0]]})
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["properties"]["character"] == {"type": "string", "enum": PERSONAS}
    assert {k: v for k, v in schema["properties"].items() if k != "character"} == {k: v for k, v in BRIEF_SCHEMA["properties"].items() if k != "character"}
    assert BRIEF_SCHEMA["properties"]["character"] == {"type": "string"}  # the shared constant is not changed
    answer = {"character": PERSONAS[1], "question_type": "summary", "difficulty": "phd"}
    jsonschema.validate(answer, schema)
    outsider = dict(answer, character="A pirate")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(outsider, schema)
    assert parse_brief(json.dumps(answer), PERSONAS) == (answer, None)
    assert parse_brief(json.dumps(outsider), PERSONAS) == (None, "unknown_character")
    with pytest.raises(ValueError, match="at least one candidate persona"):
        brief_schema([])


def test_vllm_preprocess_sends_each_row_its_own_schema():
    captured = []

    def capture(processor_config, *, preprocess):
        captured.append(preprocess)
        return processor_config

    config = GeneratorConfig.model_validate({"engine": "vllm", "model": "/models/qwen3"})
    stage = vllm_stage(config, brief_step_schema, capture)
    row = shelter_row({"prompt": "pick one", "generation_seed": 4, "personas": PERSONAS[:2], "model": "mine"})
    added = captured[0](row)
    assert set(added) == {"messages", "sampling_params"}  # Ray merges these into the row; the job's columns stay sheltered
    assert added["sampling_params"]["structured_outputs"]["json"]["properties"]["character"]["enum"] == PERSONAS[:2]
    assert added["messages"][-1] == {"role": "user", "content": "pick one"}
    assert stage.processor.model_source == "/models/qwen3"


def ray_error_row(user: dict) -> dict:
    """What Ray 2.60 returns for a row its engine failed on: the whole data dict, never post-processed."""
    return dict(
        shelter_row(user),
        messages=[{"role": "user", "content": "x"}],
        prompt="",
        prompt_token_ids=None,
        num_input_tokens=0,
        generated_tokens=[],
        generated_text="",
        num_generated_tokens=0,
        request_id=-1,
        params="",
        __inference_error__="RuntimeError: boom",
    )


def test_settle_turns_ray_rows_into_job_rows():
    user = {"id": "a", "prompt": "write", "generated_text": "old step", "attempts": 1, "generation_seed": 3}
    generated = dict(ray_error_row(user), prompt="<|im_start|>templated", generated_text='{"query": "q"}', generated_tokens=[1, 2], request_id=7, __inference_error__="")
    assert settle_row(generated, generated["generated_text"]) == dict(user, generated_text='{"query": "q"}', attempts=1, generation_error=None)
    failed = ray_error_row(user)
    assert settle_row(failed, failed["generated_text"]) == dict(user, generated_text="", attempts=0, generation_error="RuntimeError: boom")
    skipped = dict(generated, user__prompt="")
    assert settle_row(skipped, "{}") == dict(user, prompt="", generated_text="", attempts=0, generation_error=None)


def test_parse_steps_reject_failed_rows_and_keep_the_first_rejection():
    row = {"id": "a", "personas": PERSONAS, "generated_text": "", "generation_error": "RuntimeError: boom"}  # no attempts column
    config = apply_brief_step(row)
    assert config["rejection"] == "brief:no_generation" and config["brief_attempts"] == 0 and config["persona"] is None
    rules = QueryRules(1, 64, True)
    skipped = query_step_prompt(config)
    assert skipped["prompt"] == ""
    assert apply_query_step(dict(skipped, generation_error="RuntimeError: again"), rules)["rejection"] == "brief:no_generation"
    passage = {"id": "b", "positive": "Tides rise twice a day.", "rejection": None, "generated_text": "", "generation_error": "TimeoutError: x"}
    assert apply_query_step(passage, rules)["rejection"] == "query:no_generation"
    assert apply_brief_step(dict(row, rejection="plan:earlier"))["rejection"] == "plan:earlier"


# --- Ray 2.60's engine stage, without vLLM -------------------------------------------------


def fails(prompt: str) -> bool:
    """1 record in 5 fails: doc-03 in the brief step, doc-08 in the query step."""
    brief = "Candidate characters" in prompt
    return ("MARKER-03" in prompt and brief) or ("MARKER-08" in prompt and not brief)


def schema_answer(schema: dict) -> str:
    """The answer a guided decoder could write: the last persona candidate, or a fixed query."""
    properties = schema["properties"]
    if "character" in properties:
        return json.dumps({"character": str(properties["character"]["enum"][-1]), "question_type": "acquire_knowledge", "difficulty": "university"})
    return json.dumps({"query": "which measurements does this record describe"})


def engine_udf_class():
    from ray.llm._internal.batch.stages.base import StatefulStageUDF
    from ray.llm._internal.batch.stages.vllm_engine_stage import vLLMOutputData

    class FailingEngineUDF(StatefulStageUDF):
        """``vLLMEngineStageUDF``'s row handling in Ray 2.60, with a scripted engine.

        ``_prepare_llm_request`` pops ``prompt``, ``tokenized_prompt`` and
        ``sampling_params`` from the row; the answer comes back as ``vLLMOutputData`` plus
        ``request_id``, ``batch_uuid``, ``time_taken_llm``, ``params`` and
        ``__inference_error__ = ""``. A failing row, as ``_generate_with_error_handling``
        returns it under ``should_continue_on_error``: the default ``vLLMOutputData`` (its
        prompt read after the pop, so empty), ``request_id -1``, ``time_taken_llm -1``,
        ``params ""`` and the error message.
        """

        def __init__(self, data_column, expected_input_keys, model, should_continue_on_error, fails):
            from transformers import AutoTokenizer

            super().__init__(data_column, expected_input_keys)
            self.tokenizer = AutoTokenizer.from_pretrained(model)
            self.should_continue_on_error, self.fails, self.request_id = should_continue_on_error, fails, 0

        def generate(self, row: dict) -> dict:
            prompt, tokenized = row.pop("prompt", None), row.pop("tokenized_prompt", None)
            params = row.pop("sampling_params")
            if self.fails(prompt):
                raise RuntimeError("stand-in engine: request failed")
            text = schema_answer(params["structured_outputs"]["json"])
            tokens = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            self.request_id += 1
            output = vLLMOutputData(prompt=prompt, prompt_token_ids=list(tokenized), num_input_tokens=len(tokenized), generated_tokens=tokens,
                                    generated_text=text, num_generated_tokens=len(tokens), metrics={"arrival_time": 0.0, "finished_time": 0.01})  # fmt: skip
            return {**output.model_dump(), "request_id": self.request_id, "time_taken_llm": 0.01, "params": str(dict(params))}

        async def udf(self, batch):
            batch_uuid = uuid.uuid4()
            for row in batch:
                idx = row[self.IDX_IN_BATCH_COLUMN]
                try:
                    yield {**self.generate(row), self.IDX_IN_BATCH_COLUMN: idx, "batch_uuid": batch_uuid.hex, "__inference_error__": ""}
                except Exception as error:
                    if not self.should_continue_on_error:
                        raise
                    default = vLLMOutputData(prompt=row.get("prompt", "")[:500], prompt_token_ids=None, num_input_tokens=0)
                    yield {**default.model_dump(), "request_id": -1, self.IDX_IN_BATCH_COLUMN: idx, "batch_uuid": batch_uuid.hex,
                           "time_taken_llm": -1, "params": "", "__inference_error__": f"{type(error).__name__}: {error}"}  # fmt: skip

    return FailingEngineUDF


def stand_in_processor(processor_config, **hooks):
    """``build_processor`` for real, with its vLLM engine stage swapped for the stand-in."""
    from ray.data.llm import build_processor
    from ray.llm._internal.batch.stages.base import StatefulStage

    processor = build_processor(processor_config, **hooks)
    real = processor.stages["vLLMEngineStage"]
    map_kwargs = {key: value for key, value in real.map_batches_kwargs.items() if key not in ("num_gpus", "accelerator_type")}
    processor.stages["vLLMEngineStage"] = StatefulStage(
        fn=engine_udf_class(),
        fn_constructor_kwargs=dict(model=processor_config.model_source, should_continue_on_error=processor_config.should_continue_on_error, fails=fails),
        map_batches_kwargs=dict(map_kwargs, num_cpus=0.5),
    )
    return processor


@pytest.fixture(scope="module")
def wide_ray():
    """A private local Ray with 16 logical CPUs: two processors hold 8 actors (the stages take
    a whole CPU each by default), besides the teacher's."""
    import ray
    from ray import cloudpickle

    if ray.is_initialized():
        ray.shutdown()
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers cannot import this test module
    ray.init(num_cpus=16, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def tiny_generator(batch_size: int) -> dict:
    from embedforge.models.registry import resolve_model

    return {"engine": "vllm", "model": str(resolve_model("tiny-qwen3-random")), "max_new_tokens": 32, "vllm": {"batch_size": batch_size}}


@pytest.mark.slow
def test_vllm_stage_keeps_job_columns_and_settles_failed_rows(wide_ray):
    import ray

    config = GeneratorConfig.model_validate(tiny_generator(batch_size=4))
    rows = [{"id": f"r{i}", "prompt": f"MARKER-0{i} Candidate characters: list", "generation_seed": i, "model": "job-column", "metrics": i} for i in range(10)]
    rows[9]["prompt"] = ""  # a row rejected earlier: skipped
    out = {row["id"]: row for row in vllm_stage(config, lambda row: {"type": "object", "properties": {"character": {"enum": ["A", "B"]}}}, stand_in_processor)(
        ray.data.from_items(rows, override_num_blocks=3)).take_all()}  # fmt: skip
    assert set(out) == {row["id"] for row in rows}
    for row in rows:
        got = out[row["id"]]
        assert set(got) == set(row) | {"generated_text", "attempts", "generation_error"}
        assert {k: got[k] for k in row} == row  # the job's prompt, model and metrics, not Ray's
    assert out["r3"]["generation_error"] == "RuntimeError: stand-in engine: request failed"
    assert (out["r3"]["generated_text"], out["r3"]["attempts"]) == ("", 0)
    assert (out["r9"]["generated_text"], out["r9"]["attempts"], out["r9"]["generation_error"]) == ("", 0, None)
    for rid in ("r0", "r1", "r2", "r4", "r5", "r6", "r7", "r8"):
        assert json.loads(out[rid]["generated_text"])["character"] == "B" and out[rid]["attempts"] == 1 and out[rid]["generation_error"] is None


@pytest.mark.slow
def test_synthesis_finishes_when_the_engine_fails_one_row_in_five(wide_ray, tmp_path):
    from embedforge.synthesis.synthesize import SynthesizeConfig, run_synthesize
    from embedforge.synthesis.personas import load_personas

    corpus = tmp_path / "corpus.jsonl"
    with corpus.open("w") as handle:
        for i in range(10):
            text = f"Record {i} reports tidal heights at harbour {i}, measured hourly over a year. The MARKER-0{i} series shows two high tides a day."
            handle.write(json.dumps({"_id": f"doc-{i}", "title": f"Harbour MARKER-0{i}", "text": text}) + "\n")
    output = tmp_path / "synth"
    config = SynthesizeConfig.model_validate(
        {
            "output_dir": str(output),
            "corpus": {"paths": [str(corpus)]},
            "generator": tiny_generator(batch_size=4),
            "teacher": {"num_cpus": 0.5, "batch_size": 5},
            "shard_size": 5,
            "ray_data": {"rows_per_block": 5},
        }
    )
    stats = run_synthesize(config, processor_factory=stand_in_processor)
    assert (stats["records"], stats["attempted"], stats["accepted"]) == (10, 10, 8)
    assert stats["rejected_by_reason"] == {"brief:no_generation": 1, "query:no_generation": 1}
    rejected = {row["passage_id"]: row["reason"] for row in pq.read_table(str(output / "rejected")).to_pylist()}
    assert rejected == {"doc-3#0": "brief:no_generation", "doc-8#0": "query:no_generation"}
    table = pq.read_table(str(output / "pairs"))
    assert table.schema.names == PAIR_SCHEMA.names and not set(table.schema.names) & set(ENGINE_COLUMNS)
    pairs = table.to_pylist()
    personas = set(load_personas())
    assert sorted(p["passage_id"] for p in pairs) == [f"doc-{i}#0" for i in (0, 1, 2, 4, 5, 6, 7, 9)]
    assert all(p["query"] == "which measurements does this record describe" and p["persona"] in personas and p["attempts"] == 2 for p in pairs)
    assert all(p["engine"] == "vllm" and -1 <= p["teacher_score"] <= 1 for p in pairs)
