"""Full fine-tuning stored as a weight delta: each form round-trips to the fine-tuned weights,
the artifact store lists and hashes the delta, and the scorer loads it.

Uses a tiny randomly initialised BERT built here (no encoder download, no data).
"""

from __future__ import annotations

import pytest
import torch

from models import artifact_store
from models.delta import apply_delta, decode_delta, encode_delta, packed_bytes, weight_delta


def _tiny_bert():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)  # the same base weights every time
    config = BertConfig(
        vocab_size=60,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
    )
    return BertModel(config).eval()


def _fine_tuned(scale: float = 1e-2):
    """A tiny BERT plus a fine-tuning-like change: a low-rank part and small noise per
    matrix, noise on vectors; the pooler untouched (as with mean pooling)."""
    model = _tiny_bert()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.startswith("pooler"):
                continue
            if param.dim() == 2:
                a = torch.randn(param.shape[0], 2, generator=gen)
                b = torch.randn(2, param.shape[1], generator=gen)
                param.add_(scale * (a @ b) + 0.01 * scale * torch.randn(param.shape, generator=gen))
            else:
                param.add_(scale * torch.randn(param.shape, generator=gen))
    return model


def _max_error(form: str, rank: int = 32) -> float:
    base, tuned = _tiny_bert().state_dict(), _fine_tuned().state_dict()
    model = _tiny_bert()
    apply_delta(model, decode_delta(encode_delta(weight_delta(tuned, base), form, rank)))
    got = model.state_dict()
    return max(
        float((got[k] - tuned[k]).abs().max()) for k in tuned if tuned[k].is_floating_point()
    )


def test_delta_leaves_out_what_did_not_change():
    delta = weight_delta(_fine_tuned().state_dict(), _tiny_bert().state_dict())
    assert delta and not any(k.startswith("pooler") for k in delta)
    assert "embeddings.word_embeddings.weight" in delta
    assert all(v.dtype == torch.float32 for v in delta.values())


@pytest.mark.parametrize(
    ("form", "rank", "tolerance"),
    [
        ("fp16", 32, 1e-4),  # float16 rounding of deltas of ~0.03
        ("int8", 32, 5e-4),  # half a quantization step of the largest row
        ("svd", 32, 1e-4),  # full rank here: only float16 rounding
        ("svd", 2, 2e-3),  # the low-rank part is kept, the 1% noise is lost
        ("int4", 32, 1e-2),  # half a 4-bit step of the largest group, |delta| ~0.1 here
    ],
)
def test_each_form_round_trips_to_the_fine_tuned_weights(form, rank, tolerance):
    assert _max_error(form, rank) < tolerance


def test_int4_groups_of_64_round_trip_within_half_a_step():
    gen = torch.Generator().manual_seed(5)
    value = torch.randn(6, 192, generator=gen) * torch.logspace(-3, -1, 6).unsqueeze(1)
    packed = encode_delta({"w": value}, "int4")
    assert packed["w.q4"].dtype == torch.uint8 and packed["w.q4"].shape == (6, 96)
    assert packed["w.scale4"].shape == (6, 3)  # one scale per group of 64
    got = decode_delta(packed)["w"]
    step = value.reshape(6, 3, 64).abs().amax(2, keepdim=True) / 7
    error = (got - value).abs().reshape(6, 3, 64)
    assert bool((error <= step / 2 * 1.01 + 1e-6).all())  # float16 scales: 1% slack
    assert float(error.max()) > 0  # it is lossy: 15 levels per group
    # a lone value in a group comes back up to the float16 scale (it is coded as +-7)
    one = torch.zeros(1, 64)
    one[0, 3] = 0.25
    got_one = decode_delta(encode_delta({"x": one}, "int4"))["x"]
    assert torch.allclose(got_one, one, rtol=1e-3, atol=0) and int(got_one.count_nonzero()) == 1


def test_a_too_low_svd_rank_loses_the_update():
    assert _max_error("svd", 1) > 10 * _max_error("svd", 2)


def test_compact_forms_are_smaller_and_keyed_by_form():
    delta = weight_delta(_fine_tuned().state_dict(), _tiny_bert().state_dict())
    fp16, int8, svd = (encode_delta(delta, f, 2) for f in ("fp16", "int8", "svd"))
    assert packed_bytes(int8) < 0.6 * packed_bytes(fp16)
    wide = {"w": torch.randn(8, 256), "b": torch.randn(8)}
    int4, int8_wide = encode_delta(wide, "int4"), encode_delta(wide, "int8")
    assert packed_bytes(int4) < 0.6 * packed_bytes(int8_wide)
    assert packed_bytes(svd) < 0.5 * packed_bytes(fp16)
    assert {v.dtype for k, v in int8.items() if k.endswith(".q")} == {torch.int8}
    assert "encoder.layer.0.attention.self.query.weight.u" in svd
    with pytest.raises(ValueError, match="delta form"):
        encode_delta(delta, "bf16")


def test_a_delta_for_another_encoder_is_refused():
    with pytest.raises(ValueError, match="does not match"):
        apply_delta(_tiny_bert(), {"encoder.layer.9.output.dense.weight": torch.zeros(2, 2)})


def test_the_store_lists_and_hashes_the_delta(tmp_path):
    delta = weight_delta(_fine_tuned().state_dict(), _tiny_bert().state_dict())
    heads = {"w": torch.ones(3)}
    for form in ("fp16", "svd"):
        folder = tmp_path / form
        settings = {"form": form, "rank": 2}
        manifest = artifact_store.write_model(
            folder, heads, {"lora": None}, encoder_delta=(settings, encode_delta(delta, form, 2))
        )
        assert manifest["files"] == [artifact_store.HEADS, artifact_store.ENCODER_DELTA]
        assert manifest["encoder_delta"] == settings
        read = artifact_store.read_encoder_delta(folder)
        assert read is not None and read[0] == settings
        got = decode_delta(read[1])
        assert set(got) == set(delta)
    assert artifact_store.weights_hash(tmp_path / "fp16") != artifact_store.weights_hash(
        tmp_path / "svd"
    )
    # re-writing without a delta removes the stale file and the manifest entry
    manifest = artifact_store.write_model(tmp_path / "svd", heads, {"encoder_delta": {}})
    assert "encoder_delta" not in manifest
    assert not (tmp_path / "svd" / artifact_store.ENCODER_DELTA).exists()
    assert artifact_store.read_encoder_delta(tmp_path / "svd") is None


def test_leave_one_target_out_scores_are_filed_by_how_the_run_trained(tmp_path):
    from models.workflows import loto_key

    delta = {"encoder.layer.0.output.dense.bias": torch.ones(4)}
    artifact_store.write_model(
        tmp_path / "full", {"w": torch.ones(3)}, {"lora": None},
        encoder_delta=({"form": "fp16"}, encode_delta(delta)),
    )  # fmt: skip
    artifact_store.write_model(tmp_path / "lora", {"w": torch.ones(3)}, {"lora": None})
    assert loto_key(tmp_path / "full") == ("loto_full", "full fine-tuning")
    assert loto_key(tmp_path / "lora") == ("loto_lora", "LoRA")


def test_a_full_fine_tuning_run_saved_and_loaded_gives_the_same_embeddings(tmp_path):
    """Training step on the real encoder (every weight trainable) -> save -> load_model,
    and the compress workflow's svd form stays close to it."""
    import numpy as np

    from models.encoder import Encoder
    from models.heads import Heads
    from models.lora import _keep_delta
    from models.scorer import load_model, model_version
    from models.train import save_artifacts
    from models.workflows import compress_model

    torch.manual_seed(3)
    encoder = Encoder(max_length=32)
    base = {k: v.clone() for k, v in encoder.model.state_dict().items()}
    encoder.unfreeze()
    heads = Heads(dim=encoder.dim)
    opt = torch.optim.AdamW(list(encoder.model.parameters()), lr=1e-4, weight_decay=0.0)
    texts = ["the debate was great", "he lied about the economy again", "meh"]
    encoder.model.train()
    loss = heads.sentiment(encoder.embed_texts(texts)).logsumexp(1).mean()
    loss.backward()
    opt.step()
    encoder.model.eval()
    _keep_delta(encoder, base)
    want = encoder.encode(texts)
    save_artifacts(tmp_path / "run", heads, encoder=encoder, info={}, metrics={}, max_length=32)
    assert model_version(tmp_path / "run").startswith("minilm-l6+full-")
    loaded, _, _ = load_model(tmp_path / "run")
    np.testing.assert_allclose(loaded.encode(texts), want, atol=1e-4)
    assert not np.allclose(Encoder(max_length=32).encode(texts), want, atol=1e-3)  # it moved
    result = compress_model(tmp_path / "run", tmp_path / "svd", "svd", rank=64)
    assert (
        result["form"] == "svd"
        and result["bytes"] < 0.5 * (tmp_path / "run" / artifact_store.ENCODER_DELTA).stat().st_size
    )
    small, _, _ = load_model(tmp_path / "svd")
    cosine = (small.encode(texts) * want).sum(1)
    assert cosine.min() > 0.99


def test_compress_refuses_a_run_without_an_encoder_delta(tmp_path):
    from click.testing import CliRunner

    from stream.cli.models import models_group

    artifact_store.write_model(tmp_path / "lora", {"w": torch.ones(3)}, {"lora": None})
    result = CliRunner().invoke(
        models_group, ["compress", str(tmp_path / "lora"), "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 2
    assert "no encoder delta" in result.output
    assert not (tmp_path / "out").exists()


def _run_with_delta(directory, delta_value: float, head_value: float, shape=(4, 64), seed=13):
    from models.delta import encode_delta

    packed = encode_delta({"layer.weight": torch.full(shape, delta_value)}, "fp16")
    artifact_store.write_model(
        directory,
        {"sentiment.weight": torch.full((3, 8), head_value)},
        {"training": {"config": {"seed": seed}}},
        encoder_delta=({"form": "fp16"}, packed),
    )


def test_average_of_two_full_runs_mixes_deltas_and_heads_by_weight(tmp_path):
    from models.delta import decode_delta
    from models.workflows import average_models

    _run_with_delta(tmp_path / "a", 1.0, 0.0)
    _run_with_delta(tmp_path / "b", 3.0, 2.0)
    result = average_models(tmp_path / "a", tmp_path / "b", tmp_path / "avg", 0.25, "fp16")
    assert result["form"] == "fp16"
    delta = decode_delta(artifact_store.read_encoder_delta(tmp_path / "avg")[1])
    assert torch.allclose(delta["layer.weight"], torch.full((4, 64), 1.5))
    heads = artifact_store.read_heads_state(tmp_path / "avg")
    assert torch.allclose(heads["sentiment.weight"].float(), torch.full((3, 8), 0.5))
    average = artifact_store.read_manifest(tmp_path / "avg")["training"]["weight_average"]
    runs = [str(tmp_path / "a"), str(tmp_path / "b")]
    assert average == {"runs": runs, "weight_of_second": 0.25, "heads": "average"}


def test_runs_of_different_seeds_average_encoders_but_keep_one_runs_heads(tmp_path):
    from models.delta import decode_delta
    from models.workflows import average_models

    _run_with_delta(tmp_path / "a", 1.0, 0.0, seed=13)
    _run_with_delta(tmp_path / "b", 3.0, 2.0, seed=5)
    with pytest.raises(ValueError, match="seeds 13, 5"):
        average_models(tmp_path / "a", tmp_path / "b", tmp_path / "avg")
    assert not (tmp_path / "avg").exists()
    average_models(tmp_path / "a", tmp_path / "b", tmp_path / "avg", 0.5, "fp16", heads="first")
    delta = decode_delta(artifact_store.read_encoder_delta(tmp_path / "avg")[1])
    assert torch.allclose(delta["layer.weight"], torch.full((4, 64), 2.0))
    heads = artifact_store.read_heads_state(tmp_path / "avg")
    assert torch.allclose(heads["sentiment.weight"].float(), torch.zeros(3, 8))


def test_average_refuses_runs_of_different_shapes_or_without_a_delta(tmp_path):
    from click.testing import CliRunner

    from stream.cli.models import models_group

    _run_with_delta(tmp_path / "a", 1.0, 0.0)
    _run_with_delta(tmp_path / "wide", 1.0, 0.0, shape=(4, 128))
    artifact_store.write_model(tmp_path / "lora", {"w": torch.ones(3)}, {"lora": None})
    for other, message in (("wide", "differ in shape"), ("lora", "need an encoder delta")):
        result = CliRunner().invoke(
            models_group,
            ["average", str(tmp_path / "a"), str(tmp_path / other), "--out", str(tmp_path / "o")],
        )
        assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "o").exists()
