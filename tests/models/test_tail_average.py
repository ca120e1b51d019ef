"""Weight averaging over a run's tail, the data seed, the text form a run trains on and
the share of posts it reads with masked mentions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from models.lora import LAST_ITERATE, LoraConfig, TailAverage


def _walk(tail: TailAverage, param: torch.Tensor, values: list[float], steps: int) -> None:
    """Set the parameter to each value in turn, as optimiser steps would, and sample."""
    for step, value in enumerate(values):
        with torch.no_grad():
            param.fill_(value)
        tail.update((step + 1) / steps, step)


def test_the_tail_average_is_the_mean_of_the_sampled_steps_and_the_last_is_kept():
    param = torch.zeros(3, requires_grad=True)
    tail = TailAverage([param], share=0.5, every=2)
    _walk(tail, param, [float(v) for v in range(10)], steps=10)
    # progress >= 0.5 from step 4 on; steps 4, 6, 8 by `every`, and step 9 as the last
    assert tail.samples == 4
    assert torch.equal(param.detach(), torch.full((3,), 9.0))  # the last step, until swapped
    tail.swap_in()
    assert torch.allclose(param.detach(), torch.full((3,), (4 + 6 + 8 + 9) / 4))


def test_no_tail_share_means_no_average_and_swapping_in_nothing_is_an_error():
    param = torch.zeros(2)
    tail = TailAverage([param], share=0.0)
    _walk(tail, param, [1.0, 2.0, 3.0], steps=3)
    assert tail.samples == 0
    with pytest.raises(ValueError, match="no weights were averaged"):
        tail.swap_in()
    assert torch.equal(param, torch.full((2,), 3.0))  # untouched


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("average_tail", 1.0, "average_tail must be in"),
        ("average_tail", -0.1, "average_tail must be in"),
        ("text_form", "shouting", "text_form must be one of"),
        ("mask_mentions", 1.5, "mask_mentions must be in"),
        ("mask_mentions", -0.5, "mask_mentions must be in"),
        ("none_pair_share", 1.2, "none_pair_share must be in"),
        ("layer_lr_decay", 0.0, "layer_lr_decay must be in"),
        ("layer_lr_decay", 1.5, "layer_lr_decay must be in"),
        ("layer_lr_decay", 0.8, "applies to method full only"),  # the default method: lora
    ],
)
def test_a_config_that_cannot_train_is_refused(field, value, message):
    with pytest.raises(ValueError, match=message):
        LoraConfig(**{field: value}).check()


def test_the_cli_passes_data_seed_tail_and_text_form_to_the_run(tmp_path, monkeypatch):
    import models.lora
    from stream.cli.models import models_group

    seen: list[LoraConfig] = []

    def fake_train(root: Path, out: Path, cfg: LoraConfig) -> dict:
        seen.append(cfg)
        raise ValueError("stopped before training")  # shown as a usage error

    monkeypatch.setattr(models.lora, "train_lora", fake_train)
    args = ["train", "--method", "full", "--seed", "13", "--data-seed", "7"]
    args += ["--average-tail", "0.5", "--text-form", "raw", "--mask-mentions", "0.25"]
    args += ["--none-pair-share", "0.15", "--layer-lr-decay", "0.8"]
    args += ["--out", str(tmp_path / "run")]
    result = CliRunner().invoke(models_group, args + ["--data", str(tmp_path)])
    assert "stopped before training" in result.output
    (cfg,) = seen
    assert (cfg.seed, cfg.data_seed, cfg.average_tail, cfg.text_form) == (13, 7, 0.5, "raw")
    assert (cfg.mask_mentions, cfg.none_pair_share, cfg.layer_lr_decay) == (0.25, 0.15, 0.8)
    result = CliRunner().invoke(models_group, ["train", "--text-form", "shouting"])
    assert result.exit_code == 2 and "shouting" in result.output


def test_a_tail_averaged_run_keeps_its_last_step_beside_the_average(data_root, tmp_path):
    """A few real steps on the real encoder and data: both models load and differ."""
    from models import artifact_store
    from models.lora import train_lora
    from models.scorer import load_model

    cfg = LoraConfig(
        method="full",
        max_steps=6,
        batch_size=8,
        max_length=32,
        weak_limit=100,
        freeze_embeddings=True,
        train_dropout=0.0,
        average_tail=0.5,
        data_seed=7,
        text_form="raw",
    )
    out = tmp_path / "run"
    metrics = train_lora(data_root, out, cfg)
    assert "sentiment" in metrics  # the averaged model was evaluated
    averaged = artifact_store.read_manifest(out)
    last = artifact_store.read_manifest(out / LAST_ITERATE)
    assert averaged["text_form"] == last["text_form"] == "raw"
    assert averaged["training"]["config"]["data_seed"] == 7
    assert averaged["training"]["weights_averaged"] == 4  # steps 2..5, every one
    assert last["training"]["weights_averaged"] == 0
    assert last["training"]["last_iterate_of"] == str(out)
    texts = ["the debate was a disaster", "great answer on the economy"]
    vectors = [load_model(folder)[0].encode(texts) for folder in (out, out / LAST_ITERATE)]
    assert vectors[0].shape == (2, 384)
    assert not np.allclose(vectors[0], vectors[1], atol=1e-4)
