"""Rerankers: the Qwen3 yes/no judge, and one-logit cross-encoders.

:class:`YesNoReranker` scores ``sigmoid(logit_yes - logit_no)`` at the last position of the
exact Qwen3-Reranker prompt (``embedforge.prompts``). Only the document is truncated, so the
fixed prefix, query and suffix always survive. :meth:`YesNoReranker.export_sequence_classifier`
folds the two LM-head rows into one ``w_yes - w_no`` classifier row, which servers load as a
cross-encoder; :class:`CrossEncoderReranker` scores such folders and encoder cross-encoders.
Both score ``sigmoid(logit)``, as sentence-transformers' ``CrossEncoder`` does for one label.

Pair cross-encoders read ``(query, document)`` text pairs (``token_type_ids`` included for
BERT-like tokenizers) and no instruction: the query goes in bare, in training and scoring.

A cross-encoder trained with a prior (:mod:`embedforge.models.prior`) keeps it in its folder's
``prior/`` and adds it to its logit wherever it scores; sentence-transformers' ``CrossEncoder``
loads the learned correction alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch
from pydantic import Field
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

from embedforge.config import ConfigModel
from embedforge.models.embedder import default_device
from embedforge.json_files import write_json
from embedforge.models.folders import SETTINGS_FILE, read_json, require_model_folder
from embedforge.models.prior import PRIOR_FILE, PRIOR_FOLDER, FirstStagePrior
from embedforge.prompts import RERANK_PREFIX, RERANK_SUFFIX, rerank_body
from embedforge.tokenization import load_tokenizer

DEFAULT_RERANK_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"


class RerankerSettings(ConfigModel):
    """How a model scores (query, document) pairs; saved as ``embedforge.json``."""

    kind: Literal["reranker"] = "reranker"
    head: Literal["yes_no", "classifier"] = "yes_no"
    """``yes_no``: a causal LM read at "yes"/"no"; ``classifier``: one logit."""
    prompt_format: Literal["qwen3", "pair"] = "qwen3"
    """``qwen3``: the exact judge template; ``pair``: tokenizer text pairs (BERT cross-encoders)."""
    max_length: int = Field(1024, ge=64)
    default_instruction: str = DEFAULT_RERANK_INSTRUCTION
    yes_token: str = "yes"
    no_token: str = "no"


def build_judge_inputs(
    tokenizer: PreTrainedTokenizerBase,
    query: str,
    documents: Sequence[str],
    instruction: str,
    max_length: int,
) -> dict[str, torch.Tensor]:
    """Token ids of the judge prompt for each document, left padded, truncating documents only.

    Each prompt is tokenised as one string, ``prefix + body + suffix``, so its ids equal the
    released Qwen3-Reranker's (a document's first word keeps its merge with the space before
    it). When a prompt is longer than ``max_length`` its document tokens are cut: they are
    the ids between the longest common prefix with the tokenised text before the document
    and the longest common suffix with the text after it.
    """
    head_text, _, tail_text = rerank_body(query, "\0", instruction).partition("\0")
    before = tokenizer(RERANK_PREFIX + head_text, add_special_tokens=False)["input_ids"]
    after = tokenizer(tail_text + RERANK_SUFFIX, add_special_tokens=False)["input_ids"]
    fixed = len(before) + len(after)
    if max_length - fixed < 1:
        raise ValueError(f"query and instruction take {fixed} tokens, leaving no room for documents in max_length={max_length}")
    prompts = [RERANK_PREFIX + head_text + document + tail_text + RERANK_SUFFIX for document in documents]
    wholes = tokenizer(prompts, add_special_tokens=False)["input_ids"] if prompts else []
    return left_pad([cut_document(ids, before, after, max_length) for ids in wholes], tokenizer.pad_token_id)


def cut_document(ids: Sequence[int], before: Sequence[int], after: Sequence[int], max_length: int) -> list[int]:
    """``ids`` with its document tokens (between ``before`` and ``after``) cut to fit ``max_length``."""
    ids = list(ids)
    if len(ids) <= max_length:
        return ids
    start = common_length(ids, before)
    stop = len(ids) - common_length(ids[start:][::-1], after[::-1])
    budget = max_length - (len(ids) - (stop - start))
    return ids[:start] + ids[start : start + budget] + ids[stop:]


def common_length(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two id lists."""
    count = 0
    for x, y in zip(a, b):
        if x != y:
            break
        count += 1
    return count


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Left-pad id lists into ``input_ids`` and ``attention_mask`` of shape ``(B, L)``."""
    width = max(len(sequence) for sequence in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        if sequence:
            input_ids[row, width - len(sequence) :] = torch.tensor(sequence, dtype=torch.long)
            attention_mask[row, width - len(sequence) :] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def single_token_id(tokenizer: PreTrainedTokenizerBase, token: str) -> int:
    ids = tokenizer(token, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError(f"the judge token {token!r} must be one token, got ids {ids}")
    return ids[0]


class YesNoReranker(nn.Module):
    """The Qwen3 yes/no relevance judge over a causal LM."""

    prior: FirstStagePrior | None = None
    """Always None for the judge: only pair cross-encoders learn a correction to a prior."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, settings: RerankerSettings):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.settings = settings
        self.yes_id = single_token_id(tokenizer, settings.yes_token)
        self.no_id = single_token_id(tokenizer, settings.no_token)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def judge_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Full-vocabulary logits at the last position, ``(B, V)``; inputs are left padded."""
        output = self.model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=1)
        return output.logits[:, -1, :]  # (B, V)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Relevance logits ``logit_yes - logit_no``, ``(B,)``."""
        logits = self.judge_logits(input_ids, attention_mask)
        return logits[:, self.yes_id] - logits[:, self.no_id]

    def build_inputs(self, query: str, documents: Sequence[str], instruction: str | None = None) -> dict[str, torch.Tensor]:
        return build_judge_inputs(
            self.tokenizer, query, documents, instruction or self.settings.default_instruction, self.settings.max_length
        )

    @torch.inference_mode()
    def score(
        self, query: str, documents: Sequence[str], *, instruction: str | None = None, batch_size: int = 16, logits: bool = False
    ) -> np.ndarray:
        """Relevance probabilities ``sigmoid(logit_yes - logit_no)`` (or the logits), in document order."""
        values = score_in_batches(self, query, documents, instruction, batch_size)
        return values if logits else probabilities(values)

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        write_json(folder / SETTINGS_FILE, self.settings.model_dump())
        return folder

    def export_sequence_classifier(self, folder: str | Path) -> Path:
        """Fold the yes/no LM head into a one-logit sequence classifier with equal scores."""
        folder = Path(folder)
        head = self.model.get_output_embeddings().weight  # (V, H)
        config = self.model.config.to_dict()
        config.update(architectures=None, num_labels=1, pad_token_id=self.tokenizer.pad_token_id)
        classifier_config = AutoConfig.for_model(**config)
        classifier = AutoModelForSequenceClassification.from_config(classifier_config)
        classifier.base_model.load_state_dict(self.model.base_model.state_dict())
        with torch.no_grad():
            classifier.score.weight.copy_((head[self.yes_id] - head[self.no_id]).unsqueeze(0))
        classifier.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        write_json(folder / SETTINGS_FILE, self.settings.model_copy(update={"head": "classifier"}).model_dump())
        return folder


class CrossEncoderReranker(nn.Module):
    """A one-logit sequence classifier; score is ``sigmoid(logit)``, or ``sigmoid(prior + logit)``.

    With ``prompt_format="qwen3"`` it reads the judge template (folded Qwen3 rerankers);
    with ``pair`` it feeds ``(query, document)`` text pairs (BERT-style cross-encoders).
    ``forward`` returns the classifier's logit alone; :meth:`score` and :meth:`logits` add
    the prior, when the reranker has one.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        settings: RerankerSettings,
        prior: FirstStagePrior | None = None,
    ):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.settings = settings
        self.prior = prior

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).logits[:, 0]  # (B,)

    def build_inputs(self, query: str, documents: Sequence[str], instruction: str | None = None) -> dict[str, torch.Tensor]:
        if self.settings.prompt_format == "qwen3":
            return build_judge_inputs(
                self.tokenizer, query, documents, instruction or self.settings.default_instruction, self.settings.max_length
            )
        return dict(
            self.tokenizer(
                [query] * len(documents),
                list(documents),
                padding=True,
                truncation="only_second",
                max_length=self.settings.max_length,
                return_tensors="pt",
            )
        )

    @torch.inference_mode()
    def score(
        self, query: str, documents: Sequence[str], *, instruction: str | None = None, batch_size: int = 16, logits: bool = False
    ) -> np.ndarray:
        values = with_prior(self, [query], [documents], score_in_batches(self, query, documents, instruction, batch_size))
        return values if logits else probabilities(values)

    def save(self, folder: str | Path) -> Path:
        """Write the classifier, tokenizer, settings and prior; ``CrossEncoder(folder)`` scores the same without a prior.

        The tokenizer is saved with ``model_max_length = settings.max_length`` so that
        sentence-transformers truncates where this class does.
        """
        folder = Path(folder)
        self.model.save_pretrained(folder)
        self.tokenizer.model_max_length = self.settings.max_length
        self.tokenizer.save_pretrained(folder)
        write_json(folder / SETTINGS_FILE, self.settings.model_dump())
        if self.prior is not None:
            self.prior.save(folder / PRIOR_FOLDER)
        return folder


def score_in_batches(
    reranker: YesNoReranker | CrossEncoderReranker, query: str, documents: Sequence[str], instruction: str | None, batch_size: int
) -> np.ndarray:
    """The reranker's own relevance logits (no prior), batch by batch, in document order, float32."""
    reranker.eval()
    scores = np.zeros(len(documents), dtype=np.float32)
    for start in range(0, len(documents), batch_size):
        batch = reranker.build_inputs(query, documents[start : start + batch_size], instruction)
        batch = {key: value.to(reranker.device) for key, value in batch.items()}
        scores[start : start + batch_size] = reranker(**batch).float().cpu().numpy()
    return scores


def with_prior(
    reranker: YesNoReranker | CrossEncoderReranker, queries: Sequence[str], groups: Sequence[Sequence[str]], logits: np.ndarray
) -> np.ndarray:
    """``logits`` (each query's group of documents, groups concatenated) plus the reranker's prior, float64.

    Rerankers without a prior return ``logits`` as they are, in float64. Every query and
    document goes through the prior's embedder in one call per side.
    """
    values = np.asarray(logits, dtype=np.float64)
    if reranker.prior is None:
        return values
    return values + np.concatenate(reranker.prior.group_scores(queries, groups))


def probabilities(logits: np.ndarray) -> np.ndarray:
    """``sigmoid(logits)`` in float64: a prior's logits reach 20 and more, where float32 sigmoids
    round to exactly 1.0 and tie. Rank by the logits themselves where order is all that matters."""
    return torch.sigmoid(torch.as_tensor(logits, dtype=torch.float64)).numpy()


def is_encoder(config: PretrainedConfig) -> bool:
    """Whether a model type is a bidirectional encoder: transformers knows it as a masked LM (BERT, RoBERTa, ...)."""
    return config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def reranker_settings(folder: str | Path, *, new_head: bool = False) -> RerankerSettings:
    """How the reranker in ``folder`` scores: its saved settings, or what its architecture implies.

    A causal LM is a yes/no judge; a sequence classifier is a one-logit cross-encoder, over
    the judge template for decoders and text pairs for encoders. With ``new_head`` a bare
    encoder (``BertModel``, as sentence-transformers saves all-MiniLM-L6-v2) also counts: it
    becomes a pair cross-encoder whose classifier head is new (the training base).
    """
    folder = require_model_folder(folder)
    saved = read_json(folder / SETTINGS_FILE)
    if saved is not None and saved.get("kind") == "reranker":
        return RerankerSettings.model_validate(saved)
    config = AutoConfig.from_pretrained(folder)
    architectures = " ".join(config.architectures or [])
    if "ForSequenceClassification" in architectures:
        prompt_format = "pair" if is_encoder(config) else "qwen3"
        return RerankerSettings(head="classifier", prompt_format=prompt_format, max_length=512)
    if "ForCausalLM" in architectures:
        return RerankerSettings()
    if is_encoder(config):
        if not new_head:
            raise ValueError(f"{folder}: a bare {config.model_type} encoder without a relevance head; train a reranker from it first (model.kind: reranker)")
        return RerankerSettings(head="classifier", prompt_format="pair", max_length=min(512, getattr(config, "max_position_embeddings", 512)))
    raise ValueError(f"{folder}: architectures {config.architectures} are neither a causal LM, a sequence classifier nor an encoder")


def load_reranker(
    folder: str | Path, *, device: str | torch.device | None = None, new_head: bool = False
) -> YesNoReranker | CrossEncoderReranker:
    """Load a reranker folder: a causal LM becomes the yes/no judge, a classifier a cross-encoder.

    ``new_head=True`` (training bases) also loads a bare encoder as a cross-encoder with a
    one-logit head that transformers initialises. A cross-encoder's ``prior/`` comes with it.
    """
    folder = require_model_folder(folder)
    settings = reranker_settings(folder, new_head=new_head)
    tokenizer = load_tokenizer(folder)
    device = device or default_device()
    if settings.head == "yes_no":
        reranker = YesNoReranker(AutoModelForCausalLM.from_pretrained(folder), tokenizer, settings)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(folder, **({"num_labels": 1} if new_head else {}))
        has_prior = (folder / PRIOR_FOLDER / PRIOR_FILE).is_file()
        reranker = CrossEncoderReranker(model, tokenizer, settings, FirstStagePrior.load(folder / PRIOR_FOLDER, device) if has_prior else None)
    return reranker.to(device).eval()
