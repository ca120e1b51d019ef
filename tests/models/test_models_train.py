"""Training building blocks (LoRA wrapping, head fitting, data helpers) and the CLI surface.

Uses a tiny randomly initialised BERT, so nothing here needs the encoder or the data.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from models.data import StanceExample, entity_swap, mentions, names_person, rename_person
from models.encoder import add_lora, load_lora, lora_state_dict, mean_pool, merge_lora
from models.evaluate import renamed_targets
from models.heads import Heads, pair_features
from models.train import class_weights, fit_simple_head


@pytest.fixture()
def tiny_bert():
    return _fresh_tiny_bert()


def test_lora_starts_as_identity_and_trains_only_adapters(tiny_bert):
    from peft import PeftModel

    ids = torch.randint(0, 50, (3, 7))
    before = tiny_bert(input_ids=ids).last_hidden_state
    model = add_lora(tiny_bert, rank=2, alpha=4)
    assert isinstance(model, PeftModel)
    adapted = {n for n, m in model.named_modules() if hasattr(m, "lora_A")}
    assert len(adapted) == 2 * 6  # q, k, v, attn-out, intermediate, output per layer
    assert not any("pooler" in n for n in adapted)
    after = model(input_ids=ids).last_hidden_state
    assert torch.allclose(before, after, atol=1e-6)  # B = 0: no change before training
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    model.train()
    model(input_ids=ids).last_hidden_state.sum().backward()
    layer = model.base_model.model.encoder.layer[0].attention.self.query
    assert layer.lora_B["default"].weight.grad is not None
    assert layer.base_layer.weight.grad is None
    state = lora_state_dict(model)
    assert len(state) == 2 * len(adapted)
    assert all("lora_A" in k or "lora_B" in k for k in state)


def _trained_adapter(tiny_bert, steps: int = 3):
    """A tiny BERT with LoRA after a few optimiser steps (B no longer zero)."""
    model = add_lora(tiny_bert, rank=2, alpha=4, dropout=0.1)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=0.05)
    ids = torch.randint(0, 50, (4, 6))
    model.train()
    for _ in range(steps):
        loss = model(input_ids=ids).last_hidden_state.pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def _fresh_tiny_bert():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)  # the same base weights every time
    config = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
    )
    return BertModel(config).eval()


def test_trained_adapters_round_trip_in_peft_standard_format(tiny_bert, tmp_path):
    from peft import PeftModel

    from models.artifact_store import ADAPTER_CONFIG, ADAPTER_WEIGHTS, read_adapter, write_adapter

    torch.manual_seed(1)
    trained = _trained_adapter(tiny_bert)
    assert any(v.abs().max() > 0 for k, v in lora_state_dict(trained).items() if "lora_B" in k)
    ids = torch.randint(0, 50, (2, 5))
    with torch.no_grad():
        want = trained(input_ids=ids).last_hidden_state
    assert write_adapter(tmp_path, trained) == [ADAPTER_CONFIG, ADAPTER_WEIGHTS]

    settings, state = read_adapter(tmp_path)
    assert (settings["rank"], settings["alpha"]) == (2, 4.0)
    assert {t.dtype for t in state.values()} == {torch.float16}  # stored at half size
    ours = add_lora(_fresh_tiny_bert(), rank=2, alpha=4).eval()
    load_lora(ours, state)
    # peft itself loads the folder (the standard format), to the same model
    theirs = PeftModel.from_pretrained(_fresh_tiny_bert(), str(tmp_path)).eval()
    with torch.no_grad():
        got = ours(input_ids=ids).last_hidden_state
        assert torch.equal(got, theirs(input_ids=ids).last_hidden_state)
    assert torch.allclose(got, want, atol=1e-3)  # float16 storage rounding only

    with pytest.raises(ValueError, match="do not match"):
        load_lora(add_lora(_fresh_tiny_bert(), rank=2, alpha=4), {"nonsense.lora_A.weight": 1})


def test_merged_lora_gives_the_same_outputs(tiny_bert):
    from peft.tuners.lora import LoraLayer

    ids = torch.randint(0, 50, (2, 5))
    model = add_lora(tiny_bert, rank=2, alpha=4)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.5)  # a trained-looking adapter
    with torch.no_grad():
        before = model(input_ids=ids).last_hidden_state
        merged = merge_lora(model)
        after = merged(input_ids=ids).last_hidden_state
    assert type(merged).__name__ == "BertModel"
    assert not any(isinstance(m, LoraLayer) for m in merged.modules())
    assert torch.allclose(before, after, atol=1e-4)


def test_a_format_1_folder_loads_and_converts_to_the_same_adapters(tiny_bert, tmp_path):
    import json

    from safetensors.torch import save_file

    from models.artifact_store import (
        ADAPTER_CONFIG,
        ADAPTER_WEIGHTS,
        LEGACY_LORA,
        convert_legacy,
        read_adapter,
        read_manifest,
        weight_files,
    )

    torch.manual_seed(2)
    state = lora_state_dict(_trained_adapter(tiny_bert))
    # the hand-written LoRA's keys: the same matrices, named after the wrapped module
    legacy = {
        k.removeprefix("base_model.model.").removesuffix(".weight"): v.half().contiguous()
        for k, v in state.items()
    }
    save_file(legacy, str(tmp_path / LEGACY_LORA))
    save_file({"w": torch.zeros(1)}, str(tmp_path / "heads.safetensors"))
    (tmp_path / "model.json").write_text(json.dumps({"format": 1, "lora": {"rank": 2, "alpha": 4}}))
    assert weight_files(tmp_path) == ["heads.safetensors", LEGACY_LORA]
    _, read = read_adapter(tmp_path)
    assert set(read) == set(state)
    assert all(torch.equal(read[k], v.half()) for k, v in state.items())

    assert convert_legacy(tmp_path) is True
    assert not (tmp_path / LEGACY_LORA).exists()
    manifest = read_manifest(tmp_path)
    assert manifest["format"] == 2
    assert manifest["files"] == ["heads.safetensors", ADAPTER_CONFIG, ADAPTER_WEIGHTS]
    settings, converted = read_adapter(tmp_path)
    assert (settings["rank"], settings["alpha"]) == (2, 4.0)
    assert all(torch.equal(converted[k], read[k]) for k in read)
    assert convert_legacy(tmp_path) is False  # already format 2


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


def test_rename_person_replaces_full_name_surname_and_first_name():
    text = "Donald Trump? Trump lied, says @realDonaldTrump. Donald!"
    assert names_person(text, "Donald Trump") and not names_person(text, "Joe Biden")
    assert not names_person("a post", "Elon Musk")  # no name patterns: not a labelled person
    renamed = rename_person(text, "Donald Trump", "Elon", "Musk")
    assert renamed == "Elon Musk? Musk lied, says @Elon Musk. Elon!"


class _ByText:
    """An encoder and stance head that read the text back (for the renamed-target check):
    `none` unless the post contains the target's surname, else favor for "good"."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def embed(self, texts):
        start = len(self.seen)
        self.seen += list(texts)
        return np.arange(start, len(self.seen), dtype=np.float32)[:, None]

    def stance_logits(self, t, g):
        rows = []
        for i, j in zip(t[:, 0].tolist(), g[:, 0].tolist(), strict=True):
            text, target = self.seen[int(i)].lower(), self.seen[int(j)].lower()
            if target.split()[-1] not in text:
                rows.append([0.0, 0.0, 5.0])
            else:
                rows.append([5.0, 0.0, 0.0] if "good" in text else [0.0, 5.0, 0.0])
        return torch.tensor(rows)


def test_renamed_targets_scores_the_renamed_posts_towards_the_new_name():
    posts = [
        StanceExample("Joe Biden is good", "Joe Biden", "favor", "pstance"),
        StanceExample("Biden is bad", "Joe Biden", "against", "pstance"),
        StanceExample("a post naming nobody", "Joe Biden", "favor", "pstance"),  # left out
        StanceExample("Trump bad", "Donald Trump", "against", "pstance"),
        StanceExample("Bernie is good", "Bernie Sanders", "favor", "pstance"),
    ]
    model = _ByText()
    out = renamed_targets(model, model.embed, posts, names=("Elon Musk",), per_target=5)
    assert out["note"] == "4 P-Stance val posts that name their person"
    # "Bernie is good" (renamed "Elon is good") has no surname: the stand-in head says none,
    # and the larger of favor/against (both 0 there) counts as favor
    assert out["as written (own target)"] == {"n": 4, "macro_f1": 1.0, "none_rate": 0.25}
    assert out["Elon Musk"] == {"n": 4, "macro_f1": 1.0, "none_rate": 0.25}
    assert "Musk is bad" in model.seen and "Elon is good" in model.seen


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

    from stream.cli.models import models_group

    run, model_dir = tmp_path / "run", tmp_path / "models"
    run.mkdir(), model_dir.mkdir()
    heads = Heads(dim=16, hidden=8)
    save_file(
        {k: v.contiguous() for k, v in heads.state_dict().items()}, str(run / "heads.safetensors")
    )
    (run / "model.json").write_text('{"lora": null}')
    (run / "metrics.json").write_text("{}")
    (model_dir / "model.json").write_text('{"lora": {"rank": 8}}')  # the previous model
    for stale in ("lora.safetensors", "adapter_model.safetensors", "runtime.json"):
        (model_dir / stale).write_text("stale files of the previous model")
    from stream.config import get_settings

    monkeypatch.setenv("SWINGDIAL_MODEL_DIR", str(model_dir))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(models_group, ["promote", str(run)])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    stored = load_file(str(model_dir / "heads.safetensors"))
    assert {t.dtype for t in stored.values()} == {torch.float16}
    for name, value in heads.state_dict().items():
        assert torch.allclose(stored[name].float(), value, atol=1e-3)
    assert (model_dir / "model.json").read_text() == '{"lora": null}'
    assert sorted(p.name for p in model_dir.iterdir()) == [
        "heads.safetensors",
        "metrics.json",
        "model.json",
    ]  # the new model has no adapters, and no verdicts yet


def test_promote_refuses_the_packaged_default(tmp_path):
    from models.artifact_store import PACKAGED_DIR, artifacts_hash
    from stream.cli.models import models_group

    before = artifacts_hash(PACKAGED_DIR)
    result = CliRunner().invoke(
        models_group, ["promote", str(PACKAGED_DIR), "--to", str(PACKAGED_DIR)]
    )
    assert result.exit_code == 2 and "read-only" in result.output
    assert artifacts_hash(PACKAGED_DIR) == before


def test_promoted_model_is_what_the_scorer_loads_and_the_package_is_untouched(tmp_path):
    import shutil

    from models.artifact_store import (
        PACKAGED_DIR,
        artifacts_hash,
        read_manifest,
        resolve,
        weights_hash,
        write_calibration,
    )
    from models.config import ScorerConfig
    from models.scorer import load_scorer
    from stream.cli.models import models_group

    packaged = {p.name: p.read_bytes() for p in PACKAGED_DIR.iterdir()}
    run, model_dir = tmp_path / "run", tmp_path / "models"
    shutil.copytree(PACKAGED_DIR, run)
    write_calibration(run, {"sentiment": {"temperature": 3.0}})  # a different model
    config = ScorerConfig(precision="torch-fp32", threads=2, model_dir=model_dir)
    assert resolve(None, model_dir) == PACKAGED_DIR  # an empty model dir: the default
    result = CliRunner().invoke(
        models_group, ["promote", str(run), "--to", str(model_dir)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert resolve(None, model_dir) == model_dir
    assert resolve(PACKAGED_DIR, model_dir) == PACKAGED_DIR  # explicit wins
    assert read_manifest(model_dir)["files"] == read_manifest(PACKAGED_DIR)["files"]
    scorer = load_scorer(config, targets=["Donald Trump"])
    assert artifacts_hash(model_dir) in scorer.version
    assert artifacts_hash(model_dir) != artifacts_hash(PACKAGED_DIR)
    assert weights_hash(model_dir) == weights_hash(PACKAGED_DIR)  # float16 copied as is
    assert scorer.calibration == {"sentiment": {"temperature": 3.0}}
    assert {p.name: p.read_bytes() for p in PACKAGED_DIR.iterdir()} == packaged


def test_continuing_from_a_folder_without_a_model_is_an_error_not_a_fresh_start(tmp_path):
    from models.lora import LoraConfig, train_lora

    with pytest.raises(FileNotFoundError, match="model.json missing"):
        train_lora(tmp_path / "data", tmp_path / "out", LoraConfig(warm_start=str(tmp_path)))
    assert not (tmp_path / "out").exists()


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


def test_dev_sample_hold_out_trains_on_the_rest_of_the_latest_year(data_root):
    from models.data import (
        HOLD_OUT_DEV_SAMPLE,
        OUT_OF_TIME_DEV_N,
        OUT_OF_TIME_ORIGIN,
        load_sentiment_oot,
        load_sentiment_train,
    )
    from models.evaluate import oot_held_out, oot_later_year

    year_out, _ = load_sentiment_train(data_root)
    sample_out, _ = load_sentiment_train(data_root, hold_out=HOLD_OUT_DEV_SAMPLE)
    everything, _ = load_sentiment_train(data_root, hold_out=None)
    dev = set(load_sentiment_oot(data_root)[0])
    assert not dev & set(sample_out)
    assert len(sample_out) == len(everything) - OUT_OF_TIME_DEV_N
    assert set(year_out) < set(sample_out)  # + the 16,212 other posts of that year
    meta = {"training": {"config": {"sentiment_hold_out": HOLD_OUT_DEV_SAMPLE}}}
    assert oot_held_out(meta) and not oot_later_year(meta)
    assert not oot_held_out({"training": {"config": {"sentiment_hold_out": "twitter-2013dev"}}})
    # a sentiment-head refit on top counts too: the head saw what its refit saw
    run = {"sentiment_hold_out": OUT_OF_TIME_ORIGIN}
    refit = {"training": {"config": run, "sentiment_head_refit": {"hold_out": HOLD_OUT_DEV_SAMPLE}}}
    assert oot_held_out(refit) and not oot_later_year(refit)
    refit["training"]["sentiment_head_refit"]["hold_out"] = None
    assert not oot_held_out(refit)


def test_a_sentiment_refit_that_would_train_on_the_dev_posts_is_refused(tmp_path):
    from models.lora import Refit, refit_sentiment_head

    with pytest.raises(ValueError, match="must hold out"):
        refit_sentiment_head(Refit(tmp_path, tmp_path, tmp_path / "out"), hold_out=None)


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
    from models.evaluate import oot_held_out, oot_later_year
    from models.lora import LoraConfig

    assert LoraConfig().sentiment_hold_out == OUT_OF_TIME_ORIGIN
    assert oot_held_out({"training": {"config": {"sentiment_hold_out": OUT_OF_TIME_ORIGIN}}})
    assert oot_held_out({"training": {"sentiment_hold_out": OUT_OF_TIME_ORIGIN}})  # frozen
    assert not oot_held_out({"training": {"config": {"seed": 13}}})  # an older run
    assert not oot_held_out({"training": {"config": {"sentiment_hold_out": None}}})
    assert oot_later_year({"training": {"config": {"sentiment_hold_out": OUT_OF_TIME_ORIGIN}}})


def test_a_lora_run_saved_and_loaded_gives_the_same_embeddings(tmp_path):
    """save_artifacts -> load_model on the real encoder, after a training step with peft."""
    from models.artifact_store import read_manifest, weight_files
    from models.encoder import Encoder
    from models.scorer import load_model, model_version
    from models.train import save_artifacts

    torch.manual_seed(3)
    encoder = Encoder(max_length=32, lora_rank=2, lora_alpha=4.0, lora_dropout=0.1)
    heads = Heads(dim=encoder.dim)
    params = [p for p in encoder.parameters() if p.requires_grad]
    assert params and all(p.dtype == torch.float32 for p in params)
    opt = torch.optim.AdamW(params + list(heads.parameters()), lr=0.05)
    texts = ["the debate was great", "he lied about the economy again", "meh"]
    encoder.model.train()
    for _ in range(2):
        loss = heads.sentiment(encoder.embed_texts(texts)).logsumexp(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    encoder.model.eval()
    want = encoder.encode(texts)
    save_artifacts(tmp_path, heads, encoder=encoder, info={}, metrics={}, max_length=32)
    assert read_manifest(tmp_path)["lora"] == {"rank": 2, "alpha": 4.0}
    assert weight_files(tmp_path) == [
        "heads.safetensors",
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    assert model_version(tmp_path).startswith("minilm-l6+lora-")
    for merge in (False, True):
        loaded, _, _ = load_model(tmp_path, merge=merge)
        assert loaded.lora_rank == (0 if merge else 2)
        np.testing.assert_allclose(loaded.encode(texts), want, atol=2e-3)  # float16 storage


def test_layer_lr_decay_gives_each_layer_its_rate_and_every_weight_one_group(tiny_bert):
    from models.lora import layer_lr_groups

    named = list(tiny_bert.named_parameters())  # 2 layers, embeddings, pooler
    groups = layer_lr_groups(named, 1e-4, 0.5)
    rate = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert sum(len(g["params"]) for g in groups) == len(named) == len(rate)
    by_name = {name: rate[id(p)] for name, p in named}
    assert by_name["pooler.dense.weight"] == pytest.approx(1e-4)
    assert by_name["encoder.layer.1.output.dense.weight"] == pytest.approx(1e-4)
    assert by_name["encoder.layer.0.attention.self.query.weight"] == pytest.approx(5e-5)
    assert by_name["embeddings.position_embeddings.weight"] == pytest.approx(2.5e-5)
    assert all(g["weight_decay"] == 0.0 for g in groups)
    (single,) = layer_lr_groups(named, 1e-4, 1.0)
    assert single["lr"] == 1e-4 and len(single["params"]) == len(named)
