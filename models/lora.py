"""Multi-task fine-tuning (LoRA or full): sentiment + stance + emotion share one encoder pass.

Each step encodes a mixed batch (posts of all three tasks plus the stance targets' names)
in a single forward pass through MiniLM with LoRA adapters; every head takes its rows and
the three losses are summed. Heads start from the frozen-encoder heads when present
(adapters start at zero, so step 0 reproduces the frozen model exactly). ``method="full"``
trains every encoder weight instead of adapters (same batches, losses and schedule, its own
learning rate) and stores the encoder as its weight delta to the base (``models.delta``).

Sized for 2 CPU cores: max_length 64, dynamic padding, and a step budget derived from a
time budget, so a run finishes when promised.
"""

from __future__ import annotations

import logging
import math
import random
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from models import artifact_store
from models.cpu import cpu_has_bf16
from models.data import (
    EMOTION_LABELS,
    OUT_OF_TIME_ORIGIN,
    SENTIMENT_HOLD_OUTS,
    SENTIMENT_LABELS,
    STANCE_LABELS,
    load_labelled,
    load_sentiment_train,
    stance_train_set,
)
from models.delta import encode_delta, weight_delta
from models.encoder import Encoder
from models.evaluate import evaluate
from models.heads import Heads
from models.report import LOTO_KEYS
from models.text import TEXT_FORM, TEXT_FORMS, mask_mentions
from models.train import (
    SOURCE_WEIGHT,
    class_weights,
    save_artifacts,
    seed_everything,
    write_weights,
)

log = logging.getLogger(__name__)


@dataclass
class LoraConfig:
    seed: int = 13
    method: str = "lora"  # "lora": adapters; "full": every encoder weight trainable
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.05
    lr: float = 1e-3  # adapters
    encoder_lr: float = 5e-5  # full fine-tuning: every encoder weight
    head_lr: float = 5e-4
    batch_size: int = 32
    max_length: int = 96  # covers 99% of P-Stance posts (17% exceed 64 tokens)
    epochs: float = 2.5  # over the stance set; other tasks are sampled by `mix`
    mix: tuple[float, float, float] = (0.30, 0.60, 0.10)  # sentiment, stance, emotion
    sentiment_limit: int | None = None
    weak_limit: int = 3000
    swap_share: float = 0.3  # entity-swap copies of person-target posts (unseen targets)
    none_pair_share: float = 0.35  # stance posts also paired, as none, with a target not named
    bf16: bool | None = None  # autocast matmuls to bfloat16; None: when the CPU has it (~3x)
    time_budget_min: float = 45.0
    max_steps: int | None = None
    warm_start: str | None = None  # artifacts to start from (frozen heads or a LoRA run)
    checkpoint_every: int = 200
    exclude_targets: tuple[str, ...] = ()  # leave-one-target-out runs
    # The out-of-time dev origin stays out of training (None: train on every origin).
    sentiment_hold_out: str | None = OUT_OF_TIME_ORIGIN
    neutral_weight: float = 1.0  # multiplies neutral's class weight (a later year is more neutral)
    train_dropout: float | None = None  # encoder dropout while training (None: the base's 0.1)
    freeze_embeddings: bool = False  # full: the word-embedding table stays the base's
    data_seed: int | None = None  # order and sampling of the data (None: seed); seed: the init
    average_tail: float = 0.0  # share of the schedule whose weights are averaged (0: last step)
    text_form: str = TEXT_FORM  # models.text; "raw" reproduces the models trained before it
    mask_mentions: float = 0.0  # share of training posts with every @handle spelt @user
    layer_lr_decay: float = 1.0  # full: each layer's lr is this times the one above (1: one lr)

    def check(self) -> None:
        """Reject a batch mix that cannot be split (negative or not adding up to 1)."""
        if min(self.mix) < 0 or abs(sum(self.mix) - 1.0) > 1e-6:
            raise ValueError(f"mix shares must be >= 0 and add up to 1, got {tuple(self.mix)}")
        if self.method not in ("lora", "full"):
            raise ValueError(f"method must be lora or full, not {self.method!r}")
        if self.freeze_embeddings and self.method != "full":
            raise ValueError("freeze_embeddings applies to method full only")
        if self.train_dropout is not None and not 0 <= self.train_dropout < 1:
            raise ValueError(f"train_dropout must be in [0, 1), got {self.train_dropout}")
        if not 0 <= self.average_tail < 1:
            raise ValueError(f"average_tail must be in [0, 1), got {self.average_tail}")
        if self.text_form not in TEXT_FORMS:
            raise ValueError(f"text_form must be one of {', '.join(TEXT_FORMS)}")
        if not 0 < self.layer_lr_decay <= 1:
            raise ValueError(f"layer_lr_decay must be in (0, 1], got {self.layer_lr_decay}")
        if self.layer_lr_decay != 1 and self.method != "full":
            raise ValueError("layer_lr_decay applies to method full only")
        for name in ("none_pair_share", "mask_mentions"):  # shares of the training data
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")


TAIL_SAMPLES = 100  # weight samples in a tail average, spread evenly over the tail


class TailAverage:
    """Uniform average of the trained weights over the last ``share`` of the schedule.

    Averaging the iterates of one run's decaying tail (stochastic weight averaging) lands
    in a flatter region than the last step, which is the usual remedy for a shift between
    the training pool and later data. ``update`` samples every ``every`` steps once
    ``progress`` (0..1) reaches ``1 - share``, and the final step (progress 1) always;
    ``swap_in`` puts the average into the parameters.
    """

    def __init__(self, params: list[torch.Tensor], share: float, every: int = 1) -> None:
        self.params = params
        self.share = share
        self.every = every
        self.samples = 0
        self.average: list[torch.Tensor] = []

    def update(self, progress: float, step: int) -> None:
        if self.share <= 0 or progress < 1 - self.share or (step % self.every and progress < 1):
            return
        self.samples += 1
        if self.samples == 1:
            self.average = [p.detach().clone() for p in self.params]
            return
        with torch.no_grad():
            for avg, p in zip(self.average, self.params, strict=True):
                avg.add_(p.detach() - avg, alpha=1.0 / self.samples)

    def swap_in(self) -> None:
        if not self.samples:
            raise ValueError("no weights were averaged (the run ended before its tail)")
        with torch.no_grad():
            for p, avg in zip(self.params, self.average, strict=True):
                p.copy_(avg)


_LAYER = re.compile(r"(?:^|\.)layer\.(\d+)\.")


def layer_lr_groups(
    named_params: list[tuple[str, torch.Tensor]], lr: float, decay: float
) -> list[dict]:
    """Optimiser groups with layer-wise learning-rate decay for full fine-tuning.

    The top transformer layer (and the pooler) train at ``lr``, each layer below at
    ``decay`` times the rate of the one above, the embeddings one step below the first
    layer. The lower layers hold the general reading of text that a later year still needs;
    a uniform rate fits them to the training pool as fast as the top. ``decay`` 1 gives one
    group at ``lr``. No weight decay: rows of tokens never seen keep a zero delta.
    """
    if decay == 1:
        return [{"params": [p for _, p in named_params], "lr": lr, "weight_decay": 0.0}]
    depth = {name: _LAYER.search(name) for name, _ in named_params}
    n_layers = 1 + max((int(m.group(1)) for m in depth.values() if m), default=-1)
    groups: dict[int, list[torch.Tensor]] = {}
    for name, param in named_params:
        match = depth[name]
        if match:
            below_top = n_layers - 1 - int(match.group(1))
        elif "embeddings" in name:
            below_top = n_layers
        else:  # the pooler and anything above the layers
            below_top = 0
        groups.setdefault(below_top, []).append(param)
    return [
        {"params": params, "lr": lr * decay**below, "weight_decay": 0.0}
        for below, params in sorted(groups.items())
    ]


def _cycle(items: list, rng: random.Random):
    while True:
        order = items[:]
        rng.shuffle(order)
        yield from order


def masked_share(texts: list[str], share: float, rng: random.Random) -> list[str]:
    """``texts`` with each one's mentions masked (``models.text.mask_mentions``) with
    probability ``share``; ``rng`` is only drawn from when ``share`` > 0, so a run without
    masking keeps the data order of the runs before the option."""
    if share <= 0:
        return texts
    return [mask_mentions(t) if rng.random() < share else t for t in texts]


def train_lora(root: Path | str, out_dir: Path, cfg: LoraConfig) -> dict:
    """Fine-tune adapters (or, ``method="full"``, the whole encoder) + heads, write
    artifacts and metrics to ``out_dir``."""
    cfg.check()
    seed_everything(cfg.seed)  # the initial weights (heads, adapters)
    data_seed = cfg.seed if cfg.data_seed is None else cfg.data_seed
    rng = random.Random(data_seed)
    mask_rng = random.Random(data_seed + 1)  # apart from rng: masking leaves the order alone
    full = cfg.method == "full"
    encoder = Encoder(
        max_length=cfg.max_length,
        lora_rank=0 if full else cfg.rank,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        text_form=cfg.text_form,
    )
    base_state = {k: v.clone() for k, v in encoder.model.state_dict().items()} if full else {}
    heads = Heads(dim=encoder.dim)
    warm = Path(cfg.warm_start) if cfg.warm_start else None
    if warm:
        # Frozen heads, or a whole LoRA run (adapters too) to continue training from.
        artifact_store.read_manifest(warm)  # a folder without a model is an error
        heads.load_state_dict(artifact_store.read_heads_state(warm))
        adapter = artifact_store.read_adapter(warm)
        delta = artifact_store.read_encoder_delta(warm)
        if delta is not None and not full:
            raise ValueError(f"{warm} was not trained with --method lora")
        if delta is not None:
            encoder.apply_delta(*delta)
        if adapter is not None and full:
            # Continue a LoRA run with full fine-tuning: its adapters merged into the weights.
            from models.scorer import load_model

            encoder.model.load_state_dict(load_model(warm)[0].model.state_dict())
        elif adapter is not None:
            settings, state = adapter
            if settings["rank"] != cfg.rank:
                raise ValueError(f"{warm} has LoRA rank {settings['rank']}, not {cfg.rank}")
            encoder.load_lora(state)
        log.info("warm-started from %s", warm)

    s_texts, s_labels = load_sentiment_train(root, hold_out=cfg.sentiment_hold_out)
    sent = list(zip(s_texts, [SENTIMENT_LABELS.index(x) for x in s_labels], strict=True))
    rng.shuffle(sent)
    if cfg.sentiment_limit:
        sent = sent[: cfg.sentiment_limit]
    e_texts, e_labels = load_labelled(root, "emotion", "train")
    emo = list(zip(e_texts, [EMOTION_LABELS.index(x) for x in e_labels], strict=True))
    stance = stance_train_set(
        root,
        seed=data_seed,
        weak_limit=cfg.weak_limit,
        generic_texts=[t for t, _ in sent[:20_000]],
        swap_share=cfg.swap_share,
        negative_ratio=cfg.none_pair_share,
        exclude_targets=tuple(cfg.exclude_targets),
    )
    stance_rows = [
        (ex.text, ex.target, STANCE_LABELS.index(ex.label), SOURCE_WEIGHT[ex.source])
        for ex in stance
    ]
    cw = {
        "sentiment": class_weights(s_labels, SENTIMENT_LABELS)
        * torch.tensor([1.0, cfg.neutral_weight, 1.0]),
        "emotion": class_weights(e_labels, EMOTION_LABELS),
        "stance": class_weights([ex.label for ex in stance], STANCE_LABELS),
    }
    n_stance = max(1, round(cfg.batch_size * cfg.mix[1]))
    n_emo = max(1, round(cfg.batch_size * cfg.mix[2]))
    n_sent = cfg.batch_size - n_stance - n_emo
    steps = math.ceil(cfg.epochs * len(stance_rows) / n_stance)
    if cfg.max_steps:
        steps = min(steps, cfg.max_steps)

    bf16 = cpu_has_bf16() if cfg.bf16 is None else cfg.bf16
    if cfg.train_dropout is not None:
        encoder.set_train_dropout(cfg.train_dropout)
    if full:
        encoder.unfreeze(word_embeddings=not cfg.freeze_embeddings)
        named = [(n, p) for n, p in encoder.model.named_parameters() if p.requires_grad]
        enc_params = [p for _, p in named]
        enc_groups = layer_lr_groups(named, cfg.encoder_lr, cfg.layer_lr_decay)
    else:
        enc_params = [p for n, p in encoder.named_parameters() if "lora_" in n]
        enc_groups = [{"params": enc_params, "lr": cfg.lr}]
    opt = torch.optim.AdamW(
        [*enc_groups, {"params": list(heads.parameters()), "lr": cfg.head_lr}],
        weight_decay=0.01,
    )
    base_lrs = [g["lr"] for g in opt.param_groups]
    losses = {k: nn.CrossEntropyLoss(weight=w, reduction="none") for k, w in cw.items()}
    it_sent, it_emo, it_st = _cycle(sent, rng), _cycle(emo, rng), _cycle(stance_rows, rng)
    encoder.model.train()
    heads.train()
    start = time.time()
    budget_s = cfg.time_budget_min * 60
    history: list[dict] = []
    run = {"sentiment": 0.0, "stance": 0.0, "emotion": 0.0}
    seen = 0
    tail = TailAverage(
        enc_params + list(heads.parameters()),
        cfg.average_tail,
        every=max(1, int(steps * cfg.average_tail) // TAIL_SAMPLES),
    )
    bar = tqdm(range(steps), desc=cfg.method, unit="step", mininterval=5)
    step = 0
    for step in bar:
        sb = [next(it_sent) for _ in range(n_sent)]
        eb = [next(it_emo) for _ in range(n_emo)]
        tb = [next(it_st) for _ in range(n_stance)]
        targets = sorted({r[1] for r in tb})
        posts = [r[0] for r in sb] + [r[0] for r in eb] + [r[0] for r in tb]
        texts = masked_share(posts, cfg.mask_mentions, mask_rng) + targets
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            emb = encoder.embed_texts(texts)  # each text passes once
        emb = emb.float()
        a, b, c = len(sb), len(sb) + len(eb), len(sb) + len(eb) + len(tb)
        tidx = torch.tensor([targets.index(r[1]) for r in tb])
        l_sent = losses["sentiment"](
            heads.sentiment(emb[:a]), torch.tensor([r[1] for r in sb])
        ).mean()
        l_emo = losses["emotion"](heads.emotion(emb[a:b]), torch.tensor([r[1] for r in eb])).mean()
        w = torch.tensor([r[3] for r in tb])
        l_st = (
            losses["stance"](
                heads.stance_logits(emb[b:c], emb[c:][tidx]), torch.tensor([r[2] for r in tb])
            )
            * w
        ).sum() / w.sum()
        loss = l_sent + l_st + l_emo
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(enc_params + list(heads.parameters()), 1.0)
        # Warm-up then linear decay over progress = max(steps done, time used): the
        # schedule always completes within the time budget, however busy the machine is.
        progress = max((step + 1) / steps, (time.time() - start) / budget_s)
        factor = min(1.0, progress / 0.05) * max(0.0, 1.0 - progress) / 0.95
        for group, base in zip(opt.param_groups, base_lrs, strict=True):
            group["lr"] = base * min(1.0, factor)
        opt.step()
        seen += len(texts)
        for k, v in (("sentiment", l_sent), ("stance", l_st), ("emotion", l_emo)):
            run[k] = 0.98 * run[k] + 0.02 * v.item() if step else v.item()
        if step % 20 == 0:
            bar.set_postfix({k[:4]: f"{v:.3f}" for k, v in run.items()})
        if step % 100 == 0:
            history.append({"step": step, **{k: round(v, 4) for k, v in run.items()}})
        tail.update(progress, step)  # progress is 1 at the last planned step
        if cfg.checkpoint_every and step and step % cfg.checkpoint_every == 0:
            _checkpoint(out_dir, encoder, heads, base_state)
        if progress >= 1.0:
            if step + 1 < steps:
                log.warning("time budget reached at step %d/%d", step + 1, steps)
            break
    bar.close()
    train_s = time.time() - start
    encoder.model.eval()
    heads.eval()
    info = {
        "method": f"{'full' if full else 'LoRA'} multi-task fine-tuning of all-MiniLM-L6-v2 "
        "(one encoder pass for sentiment + stance + emotion), MLP heads",
        "config": asdict(cfg)
        | {"mix": list(cfg.mix), "exclude_targets": list(cfg.exclude_targets)},
        "steps_done": step + 1,
        "steps_planned": steps,
        "train_seconds": round(train_s, 1),
        "texts_per_second": round(seen / max(train_s, 1e-9), 1),
        "warm_start": str(warm) if warm else None,
        "bf16_autocast": bf16,
        "train_rows": {"sentiment": len(sent), "emotion": len(emo), "stance": len(stance_rows)},
        "loss_history": history,
        "encoder_trainable_params": sum(p.numel() for p in enc_params),
        "weights_averaged": tail.samples,
    }
    if tail.samples:
        # The last step's model stays beside the average, unevaluated
        # (`swingdial models eval --artifacts OUT/last-iterate`).
        if full:
            _keep_delta(encoder, base_state)
        last = info | {"weights_averaged": 0, "last_iterate_of": str(out_dir)}
        save_artifacts(
            out_dir / LAST_ITERATE,
            heads,
            encoder=encoder,
            info=last,
            metrics={},
            max_length=cfg.max_length,
        )
        tail.swap_in()
    if full:
        _keep_delta(encoder, base_state)
    metrics = evaluate(heads, encoder.encode, root)
    # Keep the shipped model's frozen leave-one-target-out numbers, clearly labelled.
    old = artifact_store.read_metrics(artifact_store.PACKAGED_DIR)
    if "loto" in old:
        metrics["loto"] = old["loto"]
        metrics["loto_note"] = old.get("loto_note", "frozen encoder")
    save_artifacts(
        out_dir, heads, encoder=encoder, info=info, metrics=metrics, max_length=cfg.max_length
    )
    return metrics


LAST_ITERATE = "last-iterate"  # beside a tail-averaged run: its last step's weights


def _keep_delta(encoder: Encoder, base_state: dict[str, torch.Tensor]) -> None:
    """Attach the fully fine-tuned encoder's weight delta (float16) for saving."""
    delta = weight_delta(encoder.model.state_dict(), base_state)
    encoder.delta = ({"form": "fp16"}, encode_delta(delta, "fp16"))


def _checkpoint(
    out_dir: Path, encoder: Encoder, heads: Heads, base_state: dict[str, torch.Tensor]
) -> None:
    if base_state:
        _keep_delta(encoder, base_state)
    write_weights(out_dir / "checkpoint", heads, encoder)


@dataclass(frozen=True)
class Refit:
    """A head refit: the run whose head is re-trained, the labelled data, where to write."""

    artifacts: Path
    root: Path | str
    out_dir: Path
    seed: int = 13


def refit_stance_head(
    run: Refit, *, epochs: int = 12, swap_share: float = 0.15, weak_limit: int = 0
) -> dict:
    """Re-train only the stance head, many epochs, on embeddings from the adapted encoder.

    The multi-task run sees each stance post about once; with the encoder fixed after
    LoRA, a longer head fit on the same data is cheap (one encoding pass) and usually
    closes that gap. ``weak_limit`` weak SemEval Trump posts (weight 0.5) may be kept:
    without them the refitted head almost never calls a Trump post ``none`` (5% on the weak
    3-way dev set, where the labels say 47%).
    """
    artifacts, root, seed = run.artifacts, run.root, run.seed
    from models.scorer import load_model
    from models.train import EmbeddingCache, fit_stance_head

    seed_everything(seed)
    encoder, heads, meta = load_model(artifacts, merge=False)  # keep adapters to save them
    embed = EmbeddingCache(None, encoder)
    s_texts, _ = load_sentiment_train(root)
    generic = random.Random(seed).sample(s_texts, min(4000, len(s_texts)))
    stance = stance_train_set(
        root, seed=seed, weak_limit=weak_limit, generic_texts=generic, swap_share=swap_share
    )
    # Fill the cache with bf16 autocast (~1.6x faster, cosine > 0.9999 to fp32); the
    # metrics below are computed with plain fp32 encoding, as the scorer runs by default.
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cpu_has_bf16()):
        embed(sorted({ex.text for ex in stance} | {ex.target for ex in stance}))
    fit_stance_head(heads, embed, stance, epochs=epochs, seed=seed)
    return _save_refit(
        run, meta, heads, encoder, "stance_head_refit",
        epochs=epochs, rows=len(stance), swap_share=swap_share, weak_limit=weak_limit,
    )  # fmt: skip


def refit_sentiment_head(
    run: Refit,
    *,
    epochs: int = 8,
    neutral_weight: float = 1.0,
    hold_out: str | None = OUT_OF_TIME_ORIGIN,
) -> dict:
    """Re-train only the sentiment head on embeddings from the run's (adapted) encoder.

    Like :func:`refit_stance_head`: the multi-task run sees each sentiment post about once;
    several epochs of the head on fixed embeddings are one encoding pass. ``hold_out`` as
    in :func:`models.data.load_sentiment_train` (the out-of-time dev posts always stay out).
    """
    if hold_out not in SENTIMENT_HOLD_OUTS.values():
        raise ValueError(
            f"a sentiment refit must hold out the out-of-time dev posts, not {hold_out}"
        )
    artifacts, root, seed = run.artifacts, run.root, run.seed
    from models.scorer import load_model
    from models.train import EmbeddingCache, fit_simple_head

    seed_everything(seed)
    encoder, heads, meta = load_model(artifacts, merge=False)
    embed = EmbeddingCache(None, encoder)
    texts, labels = load_sentiment_train(root, hold_out=hold_out)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cpu_has_bf16()):
        embed(sorted(set(texts)))
    fit_simple_head(
        heads.sentiment,
        embed,
        texts,
        labels,
        SENTIMENT_LABELS,
        epochs=epochs,
        seed=seed,
        weight_scale=[1.0, neutral_weight, 1.0],
    )
    return _save_refit(
        run, meta, heads, encoder, "sentiment_head_refit",
        epochs=epochs, rows=len(texts), neutral_weight=neutral_weight, hold_out=hold_out,
    )  # fmt: skip


# Figures that a head refit does not re-measure: carried over from the base run's metrics.
CARRIED_METRICS = (
    *(name for key, _ in LOTO_KEYS for name in (key, f"{key}_note")),
    "cohort_benchmark",
)


def _save_refit(
    run: Refit, meta: dict, heads: Heads, encoder: Encoder, name: str, **details: Any
) -> dict:
    """Evaluate a refit head, record how it was made (``details`` under ``name`` in the
    manifest's training info), and save the run's artifacts."""
    metrics = evaluate(heads, encoder.encode, run.root)
    info = dict(meta.get("training", {}))
    info[name] = details
    old = artifact_store.read_metrics(run.artifacts)
    metrics.update({key: old[key] for key in CARRIED_METRICS if key in old})
    save_artifacts(
        run.out_dir, heads, encoder=encoder, info=info, metrics=metrics,
        max_length=encoder.max_length,
    )  # fmt: skip
    return metrics
