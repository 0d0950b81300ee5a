"""Generation engines: each turns a Ray Dataset's ``prompt`` column into ``generated_text``.

Three engines, picked by :attr:`GeneratorConfig.engine`:

- ``hf``: transformers ``generate`` in a Ray Data actor pool on CPU (or GPU). The offline
  default and what the tests run. Retries a rejected generation in place, up to
  ``max_attempts``, with a new sampling seed.
- ``vllm``: ``ray.data.llm.build_processor`` with a ``vLLMEngineProcessorConfig``; JSON
  structured output from the step's per-row schema. Needs the ``vllm`` extra and GPUs;
  **never run in this project's CI** (see ``docs/synthesis.md``).
- ``openai``: any OpenAI-compatible chat endpoint through the project's own client
  (:mod:`embedforge.synthesis.chat_client`): a cap on requests in flight, retries with
  jittered backoff that honour ``Retry-After``, a per-run request budget, and an
  ``outcome`` per row instead of a failed job.

Every engine reads the same row columns: ``prompt`` (the user message; empty means "skip
this row", for rows already rejected) and ``generation_seed``, and adds ``generated_text``
and ``attempts``; the ``vllm`` engine also adds ``generation_error`` (the engine's message
for a row it failed on, else ``None``). Rows keep every other column.

Columns inside a ``ray.data.llm`` processor (read from Ray 2.60's source)
--------------------------------------------------------------------------
``Processor.__call__`` runs ``preprocess`` -> stages -> ``postprocess``. ``wrap_preprocess``
puts the whole input row *and* the preprocess output into one internal column ``__data``;
each stage (``StatefulStageUDF``) updates that dict with its output, overwriting a column
of the same name. The vLLM processor's stages, in order:

- chat template: reads ``messages``, **overwrites** ``prompt`` with the templated text;
- tokenize: reads ``prompt``, writes ``tokenized_prompt``;
- vLLM engine: pops ``prompt``, ``tokenized_prompt``, ``sampling_params``,
  ``multimodal_data``, ``mm_processor_kwargs``, ``multimodal_uuids``,
  ``tokenization_kwargs``; reads ``model`` (a different value makes it a LoRA request);
  writes the ``vLLMOutputData`` fields ``prompt``, ``prompt_token_ids``,
  ``num_input_tokens``, ``generated_tokens``, ``generated_text``,
  ``num_generated_tokens``, ``embeddings``, ``metrics``, ``logprobs``,
  ``prompt_logprobs``, plus ``request_id``, ``batch_uuid``, ``time_taken_llm``,
  ``params`` and ``__inference_error__``;
- detokenize: reads ``generated_tokens``, **overwrites** ``generated_text``.

With ``should_continue_on_error``, a row the engine fails on comes back from the engine
with the default ``vLLMOutputData`` (``prompt`` the truncated prompt, ``generated_text``
empty), ``request_id -1`` and ``__inference_error__`` set to ``"<Type>: <message>"``. Later
stages skip it, and ``wrap_postprocess`` returns its whole ``__data`` dict **without calling
the postprocess**; rows that succeed get ``postprocess(data)`` plus
``__inference_error__ = ""``. Ray Data fills the columns a row lacks with nulls.

So a job's own columns would be overwritten (``prompt``, ``generated_text``), misread
(``model``) or, on failed rows, never post-processed. :class:`ProcessorStage` therefore
runs a processor on *sheltered* rows: every job column is renamed ``user__<name>``
(:func:`shelter_row`) before it, and after it :func:`settle_row` keeps only those columns,
under their own names, adds ``generated_text``, ``attempts`` and ``generation_error``, and
drops every engine column. A failed row settles as ``generated_text=""``, ``attempts=0``
with its ``generation_error``, which the parse step rejects as ``no_generation``.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Literal, Protocol

from pydantic import Field

from embedforge.config import ConfigModel
from embedforge.synthesis.prompts import chat_messages

TINY_RANDOM_MODEL = "tiny-qwen3-random"
"""A model name the ``hf`` engine builds in memory: the tiny random Qwen3 (tests, offline)."""

Validator = Callable[[dict, str], "str | None"]
"""``(row, generated_text) -> rejection reason or None``: decides whether the hf engine retries."""

RowSchema = Callable[[dict], dict]
"""``row -> JSON schema`` of the generation wanted for that row (structured output)."""

ProcessorFactory = Callable[..., Callable]
"""``(processor_config, *, preprocess) -> processor``: ``ray.data.llm.build_processor``, or
anything with its signature that returns a callable on datasets (a test's stand-in)."""

USER_PREFIX = "user__"
"""Prefix of the job's columns inside a ``ray.data.llm`` processor: no stage owns such a name."""


class HFEngineConfig(ConfigModel):
    """transformers ``generate`` in a Ray Data actor pool."""

    num_cpus: float = 0.5
    """CPUs per actor. Keep it fractional on small machines: whole-CPU actors can take every
    core and starve the read stage (seen here: a 10-minute hang on 2 cores)."""
    num_gpus: float = 0.0
    concurrency: int = 1
    """Number of generator actors."""
    batch_size: int = 8
    max_attempts: int = 2
    """Generations per row until one parses; later attempts use a new sampling seed."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"


class VLLMEngineConfig(ConfigModel):
    """vLLM through ``ray.data.llm`` (GPU only; unverified here)."""

    accelerator_type: str | None = None
    """Ray accelerator type, e.g. ``H100`` or ``A10G``; ``None`` takes any GPU."""
    concurrency: int = 1
    """Number of vLLM engine replicas."""
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    batch_size: int = 64
    max_model_len: int = 8192
    structured_output: bool = True
    """Constrain output to the row's JSON schema (``sampling_params.structured_outputs``)."""
    engine_kwargs: dict[str, Any] = {}
    """Extra vLLM engine arguments, merged over the ones above."""
    continue_on_error: bool = True
    """A row the engine fails on becomes an empty generation with its ``generation_error``
    (rejected as ``no_generation``) instead of failing the job."""


class OpenAIEngineConfig(ConfigModel):
    """An OpenAI-compatible chat-completions endpoint through :class:`~embedforge.synthesis.chat_client.ChatClient`."""

    url: str = "http://127.0.0.1:8000/v1/chat/completions"
    api_key_env: str | None = "OPENAI_API_KEY"
    """Environment variable holding the bearer token; ``None`` sends no Authorization header."""
    concurrency: int = Field(default=1, ge=1)
    """Number of client actors."""
    max_in_flight: int = Field(default=32, ge=1)
    """Requests in flight per actor, across the batches it runs at once."""
    batch_size: int = Field(default=32, ge=1)
    """Rows per Ray Data batch; an actor runs a few batches at once, so keep it near ``max_in_flight``."""
    num_cpus: float = 0.25
    """CPUs per client actor: it only waits on the network."""
    qps: float | None = Field(default=None, gt=0)
    """Most requests an actor starts per second; ``None`` is no limit beyond ``max_in_flight``."""
    max_retries: int = Field(default=4, ge=0)
    """Retries per row after the first attempt, on 408, 429, 5xx, timeouts and connection errors."""
    base_retry_wait_s: float = Field(default=1.0, gt=0)
    """Backoff base: retry ``n`` waits a uniform random time in ``[0, min(max, base * 2**n)]``."""
    max_retry_wait_s: float = Field(default=60.0, gt=0)
    """Cap on the jittered backoff (a longer ``Retry-After`` is still honoured)."""
    request_timeout_s: float = Field(default=120.0, gt=0)
    """Whole-request timeout; a timed-out request is retried."""
    max_requests: int | None = Field(default=None, ge=0)
    """HTTP attempts the whole run may send, across actors and both steps; later rows are
    rejected as ``budget_exhausted``. ``None`` is no budget."""
    json_mode: bool = True
    """Ask for JSON output (``response_format``); ``False`` sends no ``response_format``."""
    json_schema: bool = True
    """With ``json_mode``, send the step's schema as ``{"type": "json_schema", ..., "strict": true}``;
    ``False`` sends ``{"type": "json_object"}`` for endpoints without schema support."""


class GeneratorConfig(ConfigModel):
    """Which LLM writes the data, and how it samples."""

    engine: Literal["hf", "vllm", "openai"] = "hf"
    model: str = TINY_RANDOM_MODEL
    """A model folder (hf, vllm), a served model name (openai), or ``tiny-qwen3-random``."""
    max_new_tokens: int = 96
    temperature: float = 0.8
    top_p: float = 0.95
    seed: int = 0
    """The vLLM engine seed. Each row's sampling seed is its own ``generation_seed``."""
    hf: HFEngineConfig = HFEngineConfig()
    vllm: VLLMEngineConfig = VLLMEngineConfig()
    openai: OpenAIEngineConfig = OpenAIEngineConfig()


class GenerationStage(Protocol):
    def __call__(self, dataset: "ray.data.Dataset") -> "ray.data.Dataset": ...  # noqa: F821


def load_causal_lm(model: str, dtype: str = "float32"):
    """``(model, tokenizer)`` for the hf engine; ``tiny-qwen3-random`` is built once and cached."""
    import torch
    from transformers import AutoModelForCausalLM

    from embedforge.models.registry import resolve_model
    from embedforge.tokenization import load_tokenizer

    folder = resolve_model(model)
    lm, tokenizer = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype)), load_tokenizer(folder)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return lm.eval(), tokenizer


class HFGenerator:
    """Ray Data callable class: sample one generation per row with transformers.

    Rows whose ``prompt`` is empty are passed through with ``generated_text=""``. With a
    ``validator``, rows whose generation it rejects are sampled again, up to
    ``max_attempts`` in total, each attempt with seed ``generation_seed + attempt``.
    """

    def __init__(
        self,
        model: str,
        *,
        max_new_tokens: int,
        temperature: float,
        top_p: float,
        max_attempts: int = 1,
        validator: Validator | None = None,
        dtype: str = "float32",
    ):
        from embedforge.session import use_assigned_cpus

        use_assigned_cpus()
        self.model, self.tokenizer = load_causal_lm(model, dtype=dtype)
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, temperature, top_p
        self.max_attempts, self.validator = max_attempts, validator

    def render(self, prompt: str) -> str:
        return self.tokenizer.apply_chat_template(chat_messages(prompt), tokenize=False, add_generation_prompt=True, enable_thinking=False)

    def sample(self, prompts: list[str], seed: int) -> list[str]:
        import torch

        torch.manual_seed(seed)
        inputs = self.tokenizer([self.render(p) for p in prompts], return_tensors="pt", padding=True)
        with torch.inference_mode():
            output = self.model.generate(
                **inputs,
                max_new_tokens=self.max_new_tokens,
                do_sample=self.temperature > 0,
                temperature=self.temperature if self.temperature > 0 else None,
                top_p=self.top_p if self.temperature > 0 else None,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        new_tokens = output[:, inputs["input_ids"].shape[1] :]  # (B, new)
        return self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)

    def __call__(self, batch):
        rows = batch.to_dict("records")
        texts = [""] * len(rows)
        attempts = [0] * len(rows)
        todo = [i for i, row in enumerate(rows) if row.get("prompt")]
        for attempt in range(self.max_attempts):
            if not todo:
                break
            seed = int(rows[todo[0]]["generation_seed"]) + attempt
            for i, text in zip(todo, self.sample([rows[i]["prompt"] for i in todo], seed)):
                texts[i], attempts[i] = text, attempt + 1
            todo = [i for i in todo if self.validator is not None and self.validator(rows[i], texts[i]) is not None]
        batch = batch.copy()
        batch["generated_text"] = texts
        batch["attempts"] = attempts
        return batch


def hf_stage(config: GeneratorConfig, validator: Validator | None = None) -> GenerationStage:
    """The ``hf`` engine as a function from a dataset to a dataset."""

    def apply(dataset):
        from ray.data import ActorPoolStrategy

        return dataset.map_batches(
            HFGenerator,
            fn_constructor_kwargs=dict(
                model=config.model,
                max_new_tokens=config.max_new_tokens,
                temperature=config.temperature,
                top_p=config.top_p,
                max_attempts=config.hf.max_attempts,
                validator=validator,
                dtype=config.hf.dtype,
            ),
            batch_format="pandas",
            batch_size=config.hf.batch_size,
            compute=ActorPoolStrategy(size=config.hf.concurrency),
            num_cpus=config.hf.num_cpus,
            num_gpus=config.hf.num_gpus or None,
        )

    return apply


def vllm_sampling_params(config: GeneratorConfig, row: dict, schema: dict | None) -> dict:
    """vLLM ``SamplingParams`` for one row; skipped rows ask for a single token."""
    params: dict[str, Any] = dict(
        temperature=config.temperature,
        top_p=config.top_p,
        max_tokens=config.max_new_tokens if row.get("prompt") else 1,
        seed=int(row["generation_seed"]),
    )
    if schema is not None and config.vllm.structured_output:
        params["structured_outputs"] = {"json": schema}
    return params


def vllm_processor_config(config: GeneratorConfig):
    """The ``vLLMEngineProcessorConfig`` that :func:`vllm_stage` builds its processor from."""
    from ray.data.llm import ChatTemplateStageConfig, vLLMEngineProcessorConfig

    engine_kwargs = dict(
        tensor_parallel_size=config.vllm.tensor_parallel_size,
        pipeline_parallel_size=config.vllm.pipeline_parallel_size,
        max_model_len=config.vllm.max_model_len,
        seed=config.seed,
    )
    engine_kwargs.update(config.vllm.engine_kwargs)
    return vLLMEngineProcessorConfig(
        model_source=config.model,
        engine_kwargs=engine_kwargs,
        concurrency=config.vllm.concurrency,
        batch_size=config.vllm.batch_size,
        accelerator_type=config.vllm.accelerator_type,
        chat_template_stage=ChatTemplateStageConfig(enabled=True, chat_template_kwargs={"enable_thinking": False}),
        tokenize_stage=True,
        detokenize_stage=True,
        should_continue_on_error=config.vllm.continue_on_error,
    )


def messages_for(row: dict) -> list[dict[str, str]]:
    return chat_messages(row.get("prompt") or "Reply with {}.")


def shelter_row(row: dict) -> dict:
    """The row with every column renamed ``user__<name>``, safe from the processor's stages."""
    return {USER_PREFIX + key: value for key, value in row.items()}


def user_columns(row: dict) -> dict:
    """The sheltered columns of a row, under their own names again; every other column dropped."""
    return {key[len(USER_PREFIX) :]: value for key, value in row.items() if key.startswith(USER_PREFIX)}


def settle_row(row: dict, text: str | None) -> dict:
    """A processor's output row as the job's row: its own columns plus the generation.

    ``row`` is either shape Ray 2.60 returns: a generated row, or a failed row (non-empty
    ``__inference_error__``, never post-processed). ``text`` is the generation read from the
    row. A failed or skipped row (empty ``prompt``) gets ``generated_text=""`` and
    ``attempts=0``; a failed one keeps the engine's message in ``generation_error``.
    """
    user = user_columns(row)
    error = row.get("__inference_error__") or None
    wrote = bool(user.get("prompt")) and error is None
    return dict(user, generated_text=(text or "") if wrote else "", attempts=1 if wrote else 0, generation_error=error)


def settle_vllm_row(row: dict) -> dict:
    return settle_row(row, row.get("generated_text"))


class ProcessorStage:
    """A ``ray.data.llm`` processor as a generation stage: shelter -> processor -> settle.

    ``settle`` turns each output row (generated or failed) into the job's row; see the
    module docstring for why the job's columns travel sheltered.
    """

    def __init__(self, processor: Callable, settle: Callable[[dict], dict]):
        self.processor, self.settle = processor, settle

    def __call__(self, dataset):
        return self.processor(dataset.map(shelter_row)).map(self.settle)


def vllm_stage(config: GeneratorConfig, schema: RowSchema | None = None, processor_factory: ProcessorFactory | None = None) -> ProcessorStage:
    """The ``vllm`` engine: a ``ray.data.llm`` processor on sheltered rows.

    ``schema(row)`` is that row's structured-output JSON schema; ``processor_factory``
    defaults to ``ray.data.llm.build_processor``.
    """
    if processor_factory is None:
        from ray.data.llm import build_processor as processor_factory

    def preprocess(row: dict) -> dict:
        user = user_columns(row)
        row_schema = schema(user) if schema is not None else None
        return dict(messages=messages_for(user), sampling_params=vllm_sampling_params(config, user, row_schema))

    return ProcessorStage(processor_factory(vllm_processor_config(config), preprocess=preprocess), settle_vllm_row)


def openai_headers(config: GeneratorConfig) -> dict[str, str]:
    """The bearer header from ``openai.api_key_env``, read on the driver (workers may lack the variable)."""
    key = os.environ.get(config.openai.api_key_env) if config.openai.api_key_env else None
    return {"Authorization": f"Bearer {key}"} if key else {}


def openai_payload(config: GeneratorConfig, row: dict, schema: RowSchema | None = None) -> dict:
    """The chat-completions request body for one row (``schema`` gives that row's JSON schema)."""
    payload: dict[str, Any] = dict(
        model=config.model,
        messages=messages_for(row),
        temperature=config.temperature,
        top_p=config.top_p,
        max_tokens=config.max_new_tokens if row.get("prompt") else 1,
        seed=int(row["generation_seed"]),
    )
    if config.openai.json_mode and schema is not None and config.openai.json_schema:
        payload["response_format"] = {"type": "json_schema", "json_schema": {"name": "embedforge_step", "schema": schema(row), "strict": True}}
    elif config.openai.json_mode:
        payload["response_format"] = {"type": "json_object"}
    return payload


def openai_text(response: Any) -> str:
    """The assistant message text of a chat-completions response, or ``""``."""
    try:
        return response["choices"][0]["message"]["content"] or ""
    except (KeyError, IndexError, TypeError):
        return ""


def openai_budget_name(config: GeneratorConfig) -> str:
    """The run's request-budget actor: one per Ray job and generator config, shared by both steps."""
    import hashlib

    import ray

    digest = hashlib.sha1(config.model_dump_json().encode()).hexdigest()[:12]
    return f"embedforge-openai-budget-{ray.get_runtime_context().get_job_id()}-{digest}"


def openai_stage(config: GeneratorConfig, schema: RowSchema | None = None) -> GenerationStage:
    """The ``openai`` engine: :class:`ChatClient` actors against a chat-completions endpoint.

    Adds ``outcome`` and ``request_log`` to the engine's columns (see :mod:`embedforge.synthesis.chat_client`).
    """
    from functools import partial

    from embedforge.synthesis.chat_client import TASKS_PER_ACTOR, ChatClient, RetryPolicy, request_budget

    options = config.openai

    def apply(dataset):
        from ray.data import ActorPoolStrategy

        return dataset.map_batches(
            ChatClient,
            fn_constructor_kwargs=dict(
                url=options.url,
                headers=openai_headers(config),
                payload_of=partial(openai_payload, config, schema=schema),
                text_of=openai_text,
                policy=RetryPolicy(options.max_retries, options.base_retry_wait_s, options.max_retry_wait_s),
                max_in_flight=options.max_in_flight,
                timeout_s=options.request_timeout_s,
                budget=request_budget(options.max_requests, openai_budget_name(config)),
                qps=options.qps,
            ),
            batch_format="pandas",
            batch_size=options.batch_size,
            compute=ActorPoolStrategy(size=options.concurrency, max_tasks_in_flight_per_actor=TASKS_PER_ACTOR, max_concurrent_calls_per_actor=TASKS_PER_ACTOR),
            num_cpus=options.num_cpus,
        )

    return apply


def build_generation_stage(
    config: GeneratorConfig,
    *,
    schema: RowSchema | None = None,
    validator: Validator | None = None,
    processor_factory: ProcessorFactory | None = None,
) -> GenerationStage:
    """The configured engine for one generation step.

    ``schema(row)`` is the JSON schema of that row's answer (structured output for
    ``vllm`` and ``openai``); ``validator`` decides the ``hf`` engine's retries;
    ``processor_factory`` builds the ``vllm`` processor (default ``build_processor``).
    """
    if config.engine == "hf":
        return hf_stage(config, validator)
    if config.engine == "vllm":
        return vllm_stage(config, schema, processor_factory)
    return openai_stage(config, schema)
