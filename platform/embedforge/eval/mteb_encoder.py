"""An :class:`~embedforge.models.embedder.Embedder` behind mteb 2.x's encoder protocol.

mteb calls ``encode(dataloader, task_metadata=, hf_split=, hf_subset=, prompt_type=)``;
this wrapper collects the texts, picks the task instruction and calls ``Embedder.encode``
once per call (which sorts by length and batches itself).

Instructions follow the recipe: documents never get one; queries of retrieval tasks get the
task's instruction; symmetric tasks (STS, classification, clustering, pair classification),
which mteb encodes with ``prompt_type=None``, get it on every text. The instruction is the
task's own (``TaskMetadata.prompt``, else mteb's default for its type), unless
``instructions`` overrides it by task name. Models that were not trained with instructions
(``settings.default_instruction is None``, e.g. all-MiniLM-L6-v2) get none under the default
``use_instructions="auto"``.
"""

from __future__ import annotations

from typing import Any, Literal, Mapping

import numpy as np
import torch
from mteb.models.model_meta import ModelMeta
from mteb.types import PromptType

from embedforge.models.embedder import Embedder


def task_instruction(task_metadata: Any, prompt_type: PromptType | None) -> str | None:
    """The instruction mteb's task defines for this side of the task, ``None`` for documents."""
    if prompt_type == PromptType.document:
        return None
    prompt = task_metadata.prompt
    if isinstance(prompt, dict):
        prompt = prompt.get(PromptType.query.value if prompt_type is None else prompt_type.value)
    if prompt:
        return prompt
    from mteb.abstasks.abstask import get_abstask_prompt

    return get_abstask_prompt(task_metadata.name) or None


def build_model_meta(name: str, embedder: Embedder, *, use_instructions: bool, model_type: str = "dense") -> ModelMeta:
    """A ``ModelMeta`` with what mteb records about a local model (it has no hub entry)."""
    return ModelMeta.create_empty(
        overwrites={
            "name": name if "/" in name else f"embedforge/{name}",
            "revision": "local",
            "embed_dim": embedder.hidden_size,
            "max_tokens": embedder.settings.max_length,
            "n_parameters": sum(parameter.numel() for parameter in embedder.parameters()),
            "similarity_fn_name": "cosine",
            "framework": ["PyTorch"],
            "use_instructions": use_instructions,
            "open_weights": True,
            "model_type": [model_type],
        }
    )


class MtebEncoder:
    """mteb ``EncoderProtocol`` around an :class:`Embedder`.

    Args:
        embedder: the loaded embedder.
        name: the model name mteb records (``org/name``; a bare name gets ``embedforge/``).
        use_instructions: ``"auto"`` (only if the model has a default instruction), ``True`` or ``False``.
        instructions: per-task-name overrides of the task instruction.
        dimensions: Matryoshka output size (``None``: full).
        batch_size: texts per forward pass.
        show_progress: a progress bar (stderr) for every batch of texts mteb hands over.
    """

    def __init__(
        self,
        embedder: Embedder,
        *,
        name: str = "embedforge/model",
        use_instructions: bool | Literal["auto"] = "auto",
        instructions: Mapping[str, str] | None = None,
        dimensions: int | None = None,
        batch_size: int = 32,
        show_progress: bool = False,
    ):
        self.embedder = embedder
        self.show_progress = show_progress
        self.use_instructions = embedder.settings.default_instruction is not None if use_instructions == "auto" else use_instructions
        self.instructions = dict(instructions or {})
        self.dimensions = dimensions
        self.batch_size = batch_size
        self.mteb_model_meta = build_model_meta(name, embedder, use_instructions=self.use_instructions)

    def instruction_for(self, task_metadata: Any, prompt_type: PromptType | None) -> str | None:
        if not self.use_instructions or prompt_type == PromptType.document:
            return None
        return self.instructions.get(task_metadata.name) or task_instruction(task_metadata, prompt_type)

    def encode(
        self,
        inputs: Any,
        *,
        task_metadata: Any,
        hf_split: str,
        hf_subset: str,
        prompt_type: PromptType | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Embeddings ``(N, D)`` of every text the dataloader yields, in order."""
        texts = [text for batch in inputs for text in batch["text"]]
        instruction = self.instruction_for(task_metadata, prompt_type)
        return self.embedder.encode(
            texts,
            query=instruction is not None,
            instruction=instruction,
            dimensions=self.dimensions,
            batch_size=kwargs.get("batch_size", self.batch_size),
            show_progress=self.show_progress,
        )

    def similarity(self, embeddings1: Any, embeddings2: Any) -> torch.Tensor:
        """Cosine similarity matrix ``(N1, N2)``; embeddings are already normalised."""
        return normalized(embeddings1) @ normalized(embeddings2).T

    def similarity_pairwise(self, embeddings1: Any, embeddings2: Any) -> torch.Tensor:
        """Cosine similarity of row pairs ``(N,)``."""
        return (normalized(embeddings1) * normalized(embeddings2)).sum(-1)


def normalized(embeddings: Any) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(embeddings) if not isinstance(embeddings, torch.Tensor) else embeddings).float()
    if tensor.dim() == 1:
        tensor = tensor.unsqueeze(0)
    return torch.nn.functional.normalize(tensor, dim=-1)
