"""Static int8 (models.quantize): calibration texts come from the training pool only, seeded,
and the OpenVINO int8 export of a tiny encoder-like graph is deterministic, really int8,
close to fp32, and scores each row on its own (fixed scales: no drift with chunk mates).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from models.data import OUT_OF_TIME_ORIGIN
from models.export import INT8_HALF_RANGE
from models.quantize import calibration_feeds, calibration_texts, quantize_openvino_int8
from models.runtime import OpenVinoRuntime, openvino_available
from models.text import RAW_FORM

pytestmark = pytest.mark.skipif(not openvino_available(), reason="openvino/nncf not installed")


def _write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def data(tmp_path) -> Path:
    root = tmp_path / "data"
    sent = [
        {"text": f"sent {i}", "label": "neutral", "origin": "twitter-2013train"} for i in range(80)
    ]
    sent += [
        {"text": f"late {i}", "label": "neutral", "origin": OUT_OF_TIME_ORIGIN} for i in range(40)
    ]
    _write(root / "sentiment" / "train.jsonl", sent)
    _write(
        root / "emotion" / "train.jsonl", [{"text": f"emo {i}", "label": "joy"} for i in range(30)]
    )
    for name in ("pstance_train", "tweeteval_train"):
        rows = [{"text": f"{name} {i}", "target": "Joe Biden", "label": "favor"} for i in range(30)]
        _write(root / "stance" / f"{name}.jsonl", rows)
    for task in ("sentiment", "emotion"):  # dev sets: must never be drawn
        _write(root / task / "val.jsonl", [{"text": f"val {i}", "label": "joy"} for i in range(30)])
    return root


def test_calibration_texts_are_seeded_training_texts(data):
    texts = calibration_texts(data, n=64, seed=0)
    assert len(texts) == 64 == len(set(texts))
    assert texts == calibration_texts(data, n=64, seed=0)
    assert texts != calibration_texts(data, n=64, seed=1)
    assert not any(t.startswith(("late", "val")) for t in texts)  # out-of-time and dev held out
    kinds = [t.split()[0] for t in texts]
    assert kinds.count("sent") == 32 and kinds.count("pstance_train") == 16


class _Tokenizer:
    def __call__(self, texts, truncation, max_length):
        return {"input_ids": [[1 + len(w) for w in t.split()][:max_length] for t in texts]}


def test_calibration_feeds_are_sorted_chunks_padded_to_their_longest():
    texts = ["a b c d e", "a", "a b", "a b c", "a b c d e f g"]
    feeds = calibration_feeds(_Tokenizer(), texts, max_length=6, chunk=2, form=RAW_FORM)
    assert [f["input_ids"].shape for f in feeds] == [(2, 2), (2, 5), (1, 6)]
    assert [f["attention_mask"].sum(1).tolist() for f in feeds] == [[1, 2], [3, 5], [6]]


def _tiny_encoder(path: Path, vocab: int = 40, dim: int = 32, hidden: int = 64) -> Path:
    """Embedding -> MatMul/Add/Relu/MatMul -> masked mean pool: the shape of the real graph."""
    rng = np.random.default_rng(0)
    weights = {
        "emb": rng.normal(0, 1, (vocab, dim)),
        "w1": rng.normal(0, 0.3, (dim, hidden)),
        "b1": rng.normal(0, 0.1, hidden),
        "w2": rng.normal(0, 0.3, (hidden, dim)),
    }
    inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()]
    inits.append(numpy_helper.from_array(np.array([1], np.int64), "axis1"))
    nodes = [
        helper.make_node("Gather", ["emb", "input_ids"], ["x"]),
        helper.make_node("MatMul", ["x", "w1"], ["h0"], name="mm1"),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("MatMul", ["h2", "w2"], ["y"], name="mm2"),
        helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["m", "two"], ["m3"]),
        helper.make_node("Mul", ["y", "m3"], ["ym"]),
        helper.make_node("ReduceSum", ["ym", "axis1"], ["s"], keepdims=0),
        helper.make_node("ReduceSum", ["m", "axis1"], ["n"], keepdims=1),
        helper.make_node("Div", ["s", "n"], ["embedding"]),
    ]
    inits.append(numpy_helper.from_array(np.array([2], np.int64), "two"))
    ints = [
        helper.make_tensor_value_info(n, TensorProto.INT64, ["b", "t"])
        for n in ("input_ids", "attention_mask")
    ]
    out = [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["b", dim])]
    graph = helper.make_graph(nodes, "tiny", ints, out, inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _feeds(seed: int, n: int = 8) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    ids = [rng.integers(1, 40, int(rng.integers(3, 12))).tolist() for _ in range(n * 4)]
    tokenizer = lambda texts, **_: {"input_ids": texts}  # noqa: E731 (ids are the "texts")
    return calibration_feeds(tokenizer, ids, 16, chunk=4, form=RAW_FORM)


def test_openvino_int8_is_deterministic_int8_and_row_independent(tmp_path):
    fp32 = _tiny_encoder(tmp_path / "tiny.onnx")
    a = quantize_openvino_int8(
        fp32, tmp_path / "a.xml", _feeds(0), float_matmuls=(), half_range_weights=INT8_HALF_RANGE
    )
    b = quantize_openvino_int8(
        fp32, tmp_path / "b.xml", _feeds(0), float_matmuls=(), half_range_weights=INT8_HALF_RANGE
    )
    assert a.with_suffix(".bin").read_bytes() == b.with_suffix(".bin").read_bytes()
    ir = a.read_text()
    assert ir.count('type="FakeQuantize"') >= 2 and 'element_type="i8"' in ir  # int8 both sides

    import onnxruntime as ort

    ref = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
    int8 = OpenVinoRuntime(a, "openvino-int8", threads=1)
    feed = _feeds(5)[1]
    want = ref.run(None, feed)[0]
    got = int8(**feed)
    cos = np.sum(want * got, 1) / np.linalg.norm(want, axis=1) / np.linalg.norm(got, axis=1)
    assert cos.min() > 0.99
    # fixed (calibrated) scales: a row's output does not depend on the rows beside it,
    # even a row of extreme tokens (dynamic int8 rescales the whole chunk for it)
    row = {k: v[:1] for k, v in feed.items()}
    loud = {k: v.copy() for k, v in feed.items()}
    loud["input_ids"][1:] = 39
    np.testing.assert_allclose(int8(**row)[0], got[0], atol=1e-5)
    np.testing.assert_allclose(int8(**loud)[0], got[0], atol=1e-5)


def _int8_weight_extremes(xml: Path) -> list[int]:
    """Largest |value| of each int8 weight constant of the two MatMuls in the IR (found
    through the weight decompression chain, not the activation side)."""
    import openvino as ov

    model = ov.Core().read_model(str(xml))
    out = []
    for name in ("mm1", "mm2"):
        (op,) = [o for o in model.get_ops() if o.get_friendly_name() == name]
        todo = [i.get_source_output().get_node() for i in op.inputs()]
        while todo:
            node = todo.pop()
            kind = node.get_type_name()
            if kind == "Constant" and node.get_element_type().get_type_name() == "i8":
                out.append(int(np.abs(node.get_data()).max()))
            elif kind in ("Convert", "Subtract", "Multiply", "Transpose", "Reshape"):
                todo += [i.get_source_output().get_node() for i in node.inputs()]
    return out


def test_half_range_weights_keep_int8_weights_in_seven_bits(tmp_path):
    """Without VNNI the int8 products saturate a 16-bit intermediate: half-range weights
    (NNCF's overflow fix) avoid it. Full range uses up to 127, half range at most 64."""
    fp32 = _tiny_encoder(tmp_path / "tiny.onnx")
    full = quantize_openvino_int8(
        fp32, tmp_path / "full.xml", _feeds(0), float_matmuls=(), half_range_weights=False
    )
    half = quantize_openvino_int8(
        fp32, tmp_path / "half.xml", _feeds(0), float_matmuls=(), half_range_weights=True
    )
    assert max(_int8_weight_extremes(full)) == 127
    extremes = _int8_weight_extremes(half)
    assert len(extremes) == 2 and max(extremes) <= 64


def test_cpu_without_vnni_gets_half_range_int8_in_its_own_file(monkeypatch):
    import importlib

    import models.cpu
    import models.export

    avx2 = "flags\t: fpu sse2 avx avx2 fma f16c\n"
    vnni = "flags\t: fpu sse2 avx avx2 avx512f avx512_vnni\n"
    files = {}
    for name, info in (("avx2", avx2), ("vnni", vnni)):
        monkeypatch.setattr(models.cpu, "_cpuinfo", lambda info=info: info)
        assert models.cpu.cpu_has_vnni() is (name == "vnni")
        importlib.reload(models.export)
        files[name] = (models.export.INT8_HALF_RANGE, models.export.EXPORT_FILES["openvino-int8"])
    monkeypatch.undo()
    importlib.reload(models.export)
    assert files["avx2"][0] is True and files["vnni"][0] is False
    assert files["avx2"][1] != files["vnni"][1]  # a shared cache never mixes the two


def _producers(model, name: str) -> set[str]:
    """Op types feeding the op ``name`` (through the weight decompression chain, if any)."""
    (op,) = [o for o in model.get_ops() if o.get_friendly_name() == name]
    seen, todo = set(), [i.get_source_output().get_node() for i in op.inputs()]
    while todo:
        node = todo.pop()
        seen.add(node.get_type_name())
        if node.get_type_name() in ("Convert", "Subtract", "Multiply", "Transpose", "Reshape"):
            todo += [i.get_source_output().get_node() for i in node.inputs()]
    return seen


def test_float_matmuls_stay_float_and_the_rest_int8(tmp_path):
    import onnxruntime as ort
    import openvino as ov

    fp32 = _tiny_encoder(tmp_path / "tiny.onnx")
    xml = quantize_openvino_int8(
        fp32,
        tmp_path / "q.xml",
        _feeds(0),
        float_matmuls=("mm2",),
        half_range_weights=INT8_HALF_RANGE,
    )
    model = ov.Core().read_model(str(xml))
    assert "FakeQuantize" in _producers(model, "mm1")
    assert "FakeQuantize" not in _producers(model, "mm2")
    feed = _feeds(5)[1]
    want = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"]).run(None, feed)[0]
    got = OpenVinoRuntime(xml, "openvino-int8", threads=1)(**feed)
    cos = np.sum(want * got, 1) / np.linalg.norm(want, axis=1) / np.linalg.norm(got, axis=1)
    assert cos.min() > 0.99


def test_a_float_pattern_that_matches_nothing_is_an_error(tmp_path):
    """The default patterns name the MiniLM export's MatMuls: a renamed graph must fail
    loudly, not quietly quantize everything."""
    import nncf

    fp32 = _tiny_encoder(tmp_path / "tiny.onnx")
    with pytest.raises(nncf.ValidationError):
        quantize_openvino_int8(fp32, tmp_path / "q.xml", _feeds(0), half_range_weights=False)


def test_openvino_int8_runs_its_float_ops_in_bf16_like_the_bf16_variant(tmp_path):
    """Both OpenVINO variants compile with the same precision hint (bf16 where the CPU has
    it, else the plugin's fp32)."""
    fp32 = _tiny_encoder(tmp_path / "tiny.onnx")
    xml = quantize_openvino_int8(
        fp32, tmp_path / "q.xml", _feeds(0), float_matmuls=(), half_range_weights=INT8_HALF_RANGE
    )
    int8 = OpenVinoRuntime(xml, "openvino-int8", threads=1)
    bf16 = OpenVinoRuntime(fp32, "openvino-bf16", threads=1)
    hint = "INFERENCE_PRECISION_HINT"
    assert str(int8.model.get_property(hint)) == str(bf16.model.get_property(hint))


def test_openvino_bf16_runs_the_fp32_graph_close_to_fp32(tmp_path):
    """openvino-bf16 compiles the fp32 ONNX file itself with bf16 precision: no second
    export, outputs within bf16 rounding of the fp32 graph (where the CPU lacks bf16 the
    plugin runs fp32 and the outputs are equal)."""
    import onnxruntime as ort

    fp32 = _tiny_encoder(tmp_path / "tiny.onnx")
    ref = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
    bf16 = OpenVinoRuntime(fp32, "openvino-bf16", threads=1)
    assert bf16.variant == "openvino-bf16"
    feed = _feeds(3)[0]
    want, got = ref.run(None, feed)[0], bf16(**feed)
    cos = np.sum(want * got, 1) / np.linalg.norm(want, axis=1) / np.linalg.norm(got, axis=1)
    assert cos.min() > 0.995
    assert got.dtype == np.float32 and got.shape == want.shape


def test_openvino_streams_return_each_chunk_in_its_own_place(tmp_path):
    """Chunks run in flight at once (one per stream) come back in the order given, each
    equal to running it alone; one stream per thread, capped at a batch's chunk count."""
    from models.runtime import MAX_STREAMS, embed_sorted, pad_chunk, run_chunks, stream_count

    fp32 = _tiny_encoder(tmp_path / "tiny.onnx")
    two = OpenVinoRuntime(fp32, "openvino-bf16", threads=2)
    one = OpenVinoRuntime(fp32, "openvino-bf16", threads=1)
    assert (two.streams, one.streams) == (2, 1)
    assert two.model.get_property("NUM_STREAMS") == 2
    chunks = [(f["input_ids"], f["attention_mask"]) for f in _feeds(1) + _feeds(2) + _feeds(3)]
    together = run_chunks(two, chunks)
    alone = [one(ids, mask) for ids, mask in chunks]
    assert len(together) == len(chunks)
    for got, want in zip(together, alone, strict=True):
        np.testing.assert_allclose(got, want, atol=2e-3)  # bf16 where the CPU has it
    texts = [
        row[mask.astype(bool)].tolist()
        for input_ids, masks in chunks
        for row, mask in zip(input_ids, masks, strict=True)
    ]
    dim = together[0].shape[1]
    sorted_out = embed_sorted(two, texts, chunk_size=3, dim=dim)
    in_order = np.concatenate([one(*pad_chunk(texts[i : i + 1])) for i in range(len(texts))])
    np.testing.assert_allclose(sorted_out, in_order, atol=2e-3)
    assert stream_count(0) >= 1 and stream_count(64) == MAX_STREAMS and stream_count(3) == 3


def test_openvino_runs_float_ops_in_bf16_only_on_a_cpu_with_bf16(tmp_path, monkeypatch):
    """Asked for bf16 on AVX-512 without BF16, the plugin emulates it at a fortieth of
    fp32's speed (docs/benchmarks.md, Session 18): the hint follows the CPU's flags."""
    import models.runtime

    fp32 = _tiny_encoder(tmp_path / "tiny.onnx")
    # the bf16 side only where the CPU really has it (an AVX2 plugin compiles f32 regardless)
    for has_bf16 in (False, True) if models.runtime.cpu_has_bf16() else (False,):
        monkeypatch.setattr(models.runtime, "cpu_has_bf16", lambda has_bf16=has_bf16: has_bf16)
        runtime = OpenVinoRuntime(fp32, "openvino-bf16", threads=1)
        assert runtime.float_precision == ("bf16" if has_bf16 else "f32")
        feed = _feeds(5)[1]
        assert runtime(**feed).shape == (len(feed["input_ids"]), 32)
