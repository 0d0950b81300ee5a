"""The text embedder: a Hugging Face backbone, a pooling rule, and L2 normalisation.

One class serves Qwen3 decoders (last-token pooling over an appended ``<|endoftext|>``,
bidirectional or causal attention) and BERT-style encoders such as all-MiniLM-L6-v2. Saved
folders load in :class:`Embedder` and in ``sentence_transformers.SentenceTransformer`` with
the same vectors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch
from pydantic import Field
from torch import nn
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoModel, PreTrainedModel, PreTrainedTokenizerBase

from embedforge.config import ConfigModel
from embedforge.json_files import write_json
from embedforge.models.folders import SETTINGS_FILE, read_json, require_model_folder
from embedforge.models.pooling import POOLERS, SENTENCE_TRANSFORMERS_MODES, PoolingName
from embedforge.prompts import END_OF_TEXT, QUERY_TEMPLATE, format_query, query_prompt_prefix
from embedforge.tokenization import append_end_token, load_tokenizer

DECODER_MODEL_TYPES = {"qwen2", "qwen3", "llama", "mistral", "gemma", "gemma2", "gemma3_text", "phi3"}
MIN_MATRYOSHKA_DIMENSION = 32


class EmbedderSettings(ConfigModel):
    """How a backbone becomes an embedder; saved as ``embedforge.json`` beside the weights."""

    kind: Literal["embedder"] = "embedder"
    pooling: PoolingName = "last_token"
    """Which token states become the embedding."""
    attention: Literal["bidirectional", "causal"] | None = None
    """Decoders only: ``bidirectional`` (training default) or ``causal`` (released Qwen3-Embedding)."""
    normalize: bool = True
    """L2-normalise outputs, so dot product is cosine."""
    max_length: int = Field(512, ge=8)
    """Tokens per text, end token included; longer texts are truncated."""
    query_template: str = QUERY_TEMPLATE
    default_instruction: str | None = None
    """Instruction for queries when the caller gives none; ``None`` leaves queries bare."""
    matryoshka_dimensions: list[int] | None = None
    """Dimensions trained with the Matryoshka loss (informational; any valid size works)."""


def truncate_embeddings(embeddings: torch.Tensor, dimensions: int | None) -> torch.Tensor:
    """Matryoshka: keep the first ``dimensions`` components and re-normalise."""
    if dimensions is None or dimensions == embeddings.shape[-1]:
        return embeddings
    return nn.functional.normalize(embeddings[..., :dimensions], dim=-1)


def check_dimensions(dimensions: int | None, hidden_size: int) -> None:
    """Raise ``ValueError`` unless ``dimensions`` is a valid Matryoshka size for this model."""
    if dimensions is None:
        return
    low = min(MIN_MATRYOSHKA_DIMENSION, hidden_size)
    if not low <= dimensions <= hidden_size:
        raise ValueError(f"dimensions must be between {low} and {hidden_size} for this model, got {dimensions}")


class Embedder(nn.Module):
    """Pooled, normalised embeddings from any Hugging Face base model.

    Args:
        backbone: the base model returning ``last_hidden_state`` (``AutoModel``).
        tokenizer: its tokenizer; for last-token pooling it must append ``<|endoftext|>``
            (:meth:`from_backbone` and :meth:`load` arrange that).
        settings: pooling, attention, template and lengths.
    """

    def __init__(self, backbone: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, settings: EmbedderSettings):
        super().__init__()
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.settings = settings
        self.pool = POOLERS[settings.pooling]
        if settings.attention is not None:
            backbone.config.is_causal = settings.attention == "causal"

    @classmethod
    def from_backbone(
        cls, backbone: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, settings: EmbedderSettings
    ) -> "Embedder":
        """Wrap a backbone, making the tokenizer append the end token for last-token pooling."""
        if settings.pooling == "last_token":
            tokenizer = append_end_token(tokenizer, END_OF_TEXT if END_OF_TEXT in tokenizer.get_vocab() else tokenizer.eos_token)
            tokenizer.padding_side = "left"
        return cls(backbone, tokenizer, settings)

    @classmethod
    def load(
        cls,
        folder: str | Path,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        attention: Literal["bidirectional", "causal"] | None = None,
    ) -> "Embedder":
        """Load an embedforge, sentence-transformers or plain Hugging Face folder.

        Pooling, normalisation, prompts and maximum length come from the folder's own files;
        ``attention`` overrides the saved attention of a decoder.
        """
        folder = require_model_folder(folder)
        settings = read_settings(folder)
        if attention is not None:
            settings = settings.model_copy(update={"attention": attention})
        backbone = AutoModel.from_pretrained(folder, dtype=dtype) if dtype else AutoModel.from_pretrained(folder)
        embedder = cls.from_backbone(backbone, load_tokenizer(folder), settings)
        return embedder.to(device or default_device()).eval()

    @property
    def hidden_size(self) -> int:
        return int(self.backbone.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.backbone.parameters()).device

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Embeddings ``(B, H)``, normalised when the settings say so."""
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, L, H)
        pooled = self.pool(hidden, attention_mask)  # (B, H)
        return nn.functional.normalize(pooled, dim=-1) if self.settings.normalize else pooled

    def prepare_texts(self, texts: Sequence[str], *, query: bool = False, instruction: str | None = None) -> list[str]:
        """Apply the query template: an explicit ``instruction`` always, the default for queries."""
        effective = instruction if instruction is not None else (self.settings.default_instruction if query else None)
        return [format_query(text, effective, self.settings.query_template) for text in texts]

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Pad and truncate to ``max_length``; the end token survives truncation."""
        return self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.settings.max_length, return_tensors="pt"
        )

    @torch.inference_mode()
    def encode(
        self,
        texts: Sequence[str],
        *,
        query: bool = False,
        instruction: str | None = None,
        dimensions: int | None = None,
        batch_size: int = 32,
        show_progress: bool = False,
    ) -> np.ndarray:
        """Embed texts in length-sorted batches; rows come back in input order as float32."""
        check_dimensions(dimensions, self.hidden_size)
        prepared = self.prepare_texts(texts, query=query, instruction=instruction)
        order = sorted(range(len(prepared)), key=lambda index: -len(prepared[index]))
        output = np.zeros((len(prepared), dimensions or self.hidden_size), dtype=np.float32)
        was_training = self.training
        self.eval()
        batches = range(0, len(order), batch_size)
        for start in tqdm(batches, desc="encode", unit="batch", disable=not show_progress):
            indices = order[start : start + batch_size]
            batch = {key: value.to(self.device) for key, value in self.tokenize([prepared[i] for i in indices]).items()}
            embeddings = truncate_embeddings(self(batch["input_ids"], batch["attention_mask"]).float(), dimensions)
            output[indices] = embeddings.cpu().numpy()
        self.train(was_training)
        return output

    def save(self, folder: str | Path) -> Path:
        """Write a folder that loads in embedforge and in sentence-transformers alike."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.backbone.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        write_sentence_transformers_files(folder, self.settings, self.hidden_size)
        write_json(folder / SETTINGS_FILE, self.settings.model_dump())
        return folder


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def write_sentence_transformers_files(folder: Path, settings: EmbedderSettings, hidden_size: int) -> None:
    """``modules.json``, pooling and prompt files in sentence-transformers' own format."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if settings.normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
        (folder / "2_Normalize").mkdir(exist_ok=True)
    write_json(folder / "modules.json", modules)
    write_json(folder / "sentence_bert_config.json", {"max_seq_length": settings.max_length, "do_lower_case": False})
    pooling = {"word_embedding_dimension": hidden_size, "include_prompt": True}
    pooling.update({mode: name == settings.pooling for name, mode in SENTENCE_TRANSFORMERS_MODES.items()})
    write_json(folder / "1_Pooling" / "config.json", pooling)
    prompts = {"query": "", "document": ""}
    if settings.default_instruction is not None:
        prompts["query"] = query_prompt_prefix(settings.default_instruction, settings.query_template)
    write_json(
        folder / "config_sentence_transformers.json",
        {"prompts": prompts, "default_prompt_name": None, "similarity_fn_name": "cosine"},
    )


def read_settings(folder: Path) -> EmbedderSettings:
    """Settings from ``embedforge.json``, else from sentence-transformers files, else guessed."""
    saved = read_json(folder / SETTINGS_FILE)
    if saved is not None:
        return EmbedderSettings.model_validate(saved)
    config = AutoConfig.from_pretrained(folder)
    is_decoder = config.model_type in DECODER_MODEL_TYPES
    settings: dict = {"pooling": "last_token" if is_decoder else "mean"}
    if is_decoder:
        settings["attention"] = "causal" if getattr(config, "is_causal", True) else "bidirectional"
    modules = read_json(folder / "modules.json")
    if modules is not None:
        settings["normalize"] = any(module["type"].endswith("Normalize") for module in modules)
        for module in modules:
            if module["type"].endswith("Pooling"):
                pooling = read_json(folder / module["path"] / "config.json") or {}
                for name, mode in SENTENCE_TRANSFORMERS_MODES.items():
                    if pooling.get(mode):
                        settings["pooling"] = name
    bert_config = read_json(folder / "sentence_bert_config.json") or {}
    if "max_seq_length" in bert_config:
        settings["max_length"] = bert_config["max_seq_length"]
    query_prompt = ((read_json(folder / "config_sentence_transformers.json") or {}).get("prompts") or {}).get("query")
    if query_prompt:
        settings["default_instruction"] = parse_instruction(query_prompt)
    return EmbedderSettings.model_validate(settings)


def parse_instruction(query_prompt: str, template: str = QUERY_TEMPLATE) -> str:
    """Recover ``{task}`` from a prompt prefix such as ``Instruct: X\\nQuery:``."""
    head, tail = template.split("{task}")
    tail = tail.replace("{query}", "")
    if query_prompt.startswith(head) and query_prompt.endswith(tail):
        return query_prompt[len(head) : len(query_prompt) - len(tail)]
    raise ValueError(f"query prompt {query_prompt!r} does not follow the template {template!r}")
