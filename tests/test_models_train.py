"""Training building blocks (LoRA wrapping, head fitting, data helpers) and the CLI surface.

Uses a tiny randomly initialised BERT, so nothing here needs the encoder or the data.
"""

from __future__ import annotations

import random

import pytest
import torch
from click.testing import CliRunner

from models.data import StanceExample, entity_swap, mentions
from models.encoder import LoRALinear, add_lora, lora_state_dict, mean_pool, merge_lora
from models.heads import Heads, pair_features
from models.train import class_weights, fit_simple_head


@pytest.fixture()
def tiny_bert():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
    )
    return BertModel(config).eval()


def test_lora_starts_as_identity_and_trains_only_adapters(tiny_bert):
    ids = torch.randint(0, 50, (3, 7))
    before = tiny_bert(input_ids=ids).last_hidden_state
    wrapped = add_lora(tiny_bert, rank=2, alpha=4)
    assert len(wrapped) == 2 * 6  # q, k, v, attn-out, intermediate, output per layer
    after = tiny_bert(input_ids=ids).last_hidden_state
    assert torch.allclose(before, after, atol=1e-6)  # B = 0: no change before training
    trainable = {n for n, p in tiny_bert.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    tiny_bert.train()
    tiny_bert(input_ids=ids).last_hidden_state.sum().backward()
    layer = tiny_bert.encoder.layer[0].attention.self.query
    assert isinstance(layer, LoRALinear)
    assert layer.lora_B.grad is not None and layer.base.weight.grad is None
    state = lora_state_dict(tiny_bert)
    assert len(state) == 2 * len(wrapped)
    assert all("lora_A" in k or "lora_B" in k for k in state)


def test_merged_lora_gives_the_same_outputs(tiny_bert):
    ids = torch.randint(0, 50, (2, 5))
    add_lora(tiny_bert, rank=2, alpha=4)
    for name, param in tiny_bert.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.5)  # a trained-looking adapter
    with torch.no_grad():
        before = tiny_bert(input_ids=ids).last_hidden_state
        assert merge_lora(tiny_bert) == 12
        after = tiny_bert(input_ids=ids).last_hidden_state
    assert not any(isinstance(m, LoRALinear) for m in tiny_bert.modules())
    assert torch.allclose(before, after, atol=1e-4)


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0, 1.0], [3.0, 3.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert torch.allclose(mean_pool(hidden, mask), torch.tensor([[2.0, 2.0]]))


def test_pair_features_and_head_shapes():
    heads = Heads(dim=8, hidden=4)
    t, g = torch.randn(5, 8), torch.randn(5, 8)
    assert pair_features(t, g).shape == (5, 32)
    assert heads.stance_logits(t, g).shape == (5, 3)
    assert heads.sentiment(t).shape == (5, 3)
    assert heads.emotion(t).shape == (5, 4)


def test_fit_simple_head_learns_separable_data():
    torch.manual_seed(0)
    centers = torch.randn(3, 8) * 3
    labels = [["negative", "neutral", "positive"][i % 3] for i in range(300)]
    x = torch.stack([centers[i % 3] + torch.randn(8) * 0.3 for i in range(300)])
    texts = [f"t{i}" for i in range(300)]
    table = dict(zip(texts, x.numpy(), strict=True))

    def embed(items):
        return torch.stack([torch.from_numpy(table[t]) for t in items]).numpy()

    heads = Heads(dim=8, hidden=16)
    names = ["negative", "neutral", "positive"]
    fit_simple_head(heads.sentiment, embed, texts, labels, names, epochs=20, seed=0)
    with torch.inference_mode():
        pred = heads.sentiment(x).argmax(1)
    acc = (pred == torch.tensor([i % 3 for i in range(300)])).float().mean()
    assert acc > 0.95


def test_class_weights_favour_rare_classes():
    w = class_weights(["a"] * 8 + ["b"] * 2, ["a", "b"])
    assert w[1] > w[0]
    assert float(w.mean()) == pytest.approx(1.0)


def test_entity_swap_renames_the_target_everywhere():
    rows = [
        StanceExample(
            "Trump lied again. #Trump2020 @realDonaldTrump", "Donald Trump", "against", "x"
        ),
        StanceExample("Go Bernie! Sanders for president", "Bernie Sanders", "favor", "x"),
        StanceExample("nothing about anyone", "Donald Trump", "favor", "x"),
        StanceExample("Trump rally", "Donald Trump", "none", "x"),
    ]
    swapped = entity_swap(rows, random.Random(0), share=1.0)
    assert len(swapped) == 2  # no mention / "none" rows are not swapped
    for ex in swapped:
        low = ex.text.lower()
        assert "trump" not in low and "bernie" not in low and "sanders" not in low
        assert ex.target.split()[-1] in ex.text
        assert ex.label in ("favor", "against") and ex.source == "swap"


def test_mentions():
    assert mentions("Bernie was great", "Bernie Sanders")
    assert mentions("#MAGA all the way", "Donald Trump")
    assert not mentions("I like pancakes", "Donald Trump")
    assert mentions("Musk tweeted again", "Elon Musk")


def test_cli_group_and_help():
    from stream.cli.models import COMMANDS, models_group

    assert [models_group] == COMMANDS
    runner = CliRunner()
    result = runner.invoke(models_group, ["--help"])
    assert result.exit_code == 0
    for name in ("train", "eval", "calibrate", "bench", "promote"):
        assert name in result.output
    for name in ("train", "eval", "calibrate"):
        result = runner.invoke(models_group, [name, "--help"])
        assert result.exit_code == 0 and "Examples:" in result.output


def test_weights_are_stored_as_float16_and_load_back_into_float32(tmp_path):
    from safetensors.torch import load_file

    from models.train import write_weights

    torch.manual_seed(1)
    heads = Heads(dim=16, hidden=8)
    assert write_weights(tmp_path, heads, encoder=None) is False  # no adapters to write
    stored = load_file(str(tmp_path / "heads.safetensors"))
    assert {t.dtype for t in stored.values()} == {torch.float16}
    reloaded = Heads(dim=16, hidden=8)
    reloaded.load_state_dict(stored)
    assert {p.dtype for p in reloaded.parameters()} == {torch.float32}
    x = torch.nn.functional.normalize(torch.randn(5, 16), dim=-1)
    heads.eval(), reloaded.eval()
    assert torch.allclose(heads.sentiment(x), reloaded.sentiment(x), atol=1e-2)
    assert not (tmp_path / "lora.safetensors").exists()


def test_held_out_target_runs_refuse_a_base_that_saw_the_target(tmp_path):
    from stream.cli.models import models_group

    result = CliRunner().invoke(
        models_group,
        ["train", "--exclude-target", "Joe Biden", "--base", str(tmp_path), "--out", str(tmp_path)],
    )
    assert result.exit_code == 2
    assert "must start from scratch" in result.output
    assert not any(tmp_path.iterdir())  # nothing trained, nothing written


def test_a_batch_mix_that_does_not_add_up_is_refused(tmp_path):
    from stream.cli.models import models_group

    result = CliRunner().invoke(
        models_group, ["train", "--mix", "0.5", "0.6", "0.1", "--out", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "add up to 1" in result.output
    assert not any(tmp_path.iterdir())


def test_held_out_eval_refuses_a_run_that_saw_every_target(tmp_path):
    from stream.cli.models import models_group

    (tmp_path / "model.json").write_text('{"training": {"config": {"exclude_targets": []}}}')
    result = CliRunner().invoke(models_group, ["eval", "--held-out", str(tmp_path), "--no-write"])
    assert result.exit_code == 2
    assert "trained on every target" in result.output


def test_promote_copies_a_run_and_stores_its_weights_as_float16(tmp_path, monkeypatch):
    from safetensors.torch import load_file, save_file

    import models.paths
    from stream.cli.models import models_group

    run, shipped = tmp_path / "run", tmp_path / "shipped"
    run.mkdir(), shipped.mkdir()
    heads = Heads(dim=16, hidden=8)
    save_file(
        {k: v.contiguous() for k, v in heads.state_dict().items()}, str(run / "heads.safetensors")
    )
    (run / "model.json").write_text('{"lora": null}')
    (run / "metrics.json").write_text("{}")
    (shipped / "lora.safetensors").write_text("stale adapters of the previous model")
    monkeypatch.setattr(models.paths, "ARTIFACTS_DIR", shipped)
    result = CliRunner().invoke(models_group, ["promote", str(run)])
    assert result.exit_code == 0, result.output
    stored = load_file(str(shipped / "heads.safetensors"))
    assert {t.dtype for t in stored.values()} == {torch.float16}
    for name, value in heads.state_dict().items():
        assert torch.allclose(stored[name].float(), value, atol=1e-3)
    assert (shipped / "model.json").read_text() == '{"lora": null}'
    assert not (shipped / "lora.safetensors").exists()  # the new model has no adapters


def test_continuing_from_a_folder_without_a_model_is_an_error_not_a_fresh_start(tmp_path):
    from models.lora import LoraConfig, train_lora

    with pytest.raises(FileNotFoundError, match="model.json missing"):
        train_lora(tmp_path / "data", tmp_path / "out", LoraConfig(warm_start=str(tmp_path)))
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def data_root():
    from stream.config import Settings

    root = Settings().shared_data
    if not (root / "sentiment" / "train.jsonl").exists():
        pytest.skip(f"labelled data not found in {root} (set SWINGDIAL_SHARED_DATA)")
    return root


def test_out_of_time_dev_set_is_held_out_of_training(data_root):
    from models.data import (
        OUT_OF_TIME_DEV_N,
        load_sentiment_oot,
        load_sentiment_train,
    )
    from models.train import sentiment_subset

    train_texts, _ = load_sentiment_train(data_root)
    everything, _ = load_sentiment_train(data_root, hold_out=None)
    dev_texts, dev_labels = load_sentiment_oot(data_root)
    assert len(dev_texts) == OUT_OF_TIME_DEV_N
    assert not set(dev_texts) & set(train_texts)
    assert set(dev_texts) <= set(everything)
    assert len(train_texts) < 0.7 * len(everything)  # the latest year is a big share
    assert not set(dev_texts) & set(sentiment_subset(data_root, None, 13)[0])
    assert load_sentiment_oot(data_root) == (dev_texts, dev_labels)  # seeded


def test_weak_dev_set_never_reaches_stance_training(data_root):
    from models.data import WEAK_DEV_N, stance_train_set, weak_split

    _, dev = weak_split(data_root, 13)
    assert len(dev) == WEAK_DEV_N
    assert weak_split(data_root, 5)[1] == dev  # the same dev set whatever the seed
    dev_texts = {ex.text for ex in dev}
    for seed in (13, 5):
        rows = stance_train_set(data_root, seed=seed, weak_limit=50_000, negative_ratio=0.0)
        weak = [ex for ex in rows if ex.source == "weak"]
        assert len(weak) > 10_000
        assert not dev_texts & {ex.text for ex in weak}


def test_runs_before_the_hold_out_are_flagged_as_trained_on_the_dev_set():
    from models.data import OUT_OF_TIME_ORIGIN
    from models.evaluate import oot_held_out
    from models.lora import LoraConfig

    assert LoraConfig().sentiment_hold_out == OUT_OF_TIME_ORIGIN
    assert oot_held_out({"training": {"config": {"sentiment_hold_out": OUT_OF_TIME_ORIGIN}}})
    assert oot_held_out({"training": {"sentiment_hold_out": OUT_OF_TIME_ORIGIN}})  # frozen
    assert not oot_held_out({"training": {"config": {"seed": 13}}})  # an older run
    assert not oot_held_out({"training": {"config": {"sentiment_hold_out": None}}})
