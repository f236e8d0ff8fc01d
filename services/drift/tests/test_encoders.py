"""The encoder backends on the real packaged MiniLM: the ONNX export is fused (one
attention op per layer) and gives torch's vectors, padded or not; a graph the optimizer
cannot fuse still runs, unfused; and a static model2vec model distilled here, offline,
from the same MiniLM is a backend the settings can choose."""

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from bench.corpora import load
from lookout.drift import DriftService, DriftSettings
from lookout.drift import onnx_encoder as onnx_module
from lookout.drift.encoder import build_encoder
from lookout.drift.model_files import model_dir
from lookout.drift.static_encoder import StaticEncoder, distil, is_static_model

TEXTS = [t for item in load("debian").items[:24] for t in (item.prompt, item.response)]


@pytest.fixture(scope="module")
def onnx_fp32(onnx_cache):
    return build_encoder("onnx", cache_dir=str(onnx_cache))


def test_the_onnx_export_fuses_attention_and_layer_norms(onnx_fp32):
    ops = [n.op_type for n in onnx.load(str(onnx_fp32.path)).graph.node]
    assert ops.count("Attention") == 6, "one fused attention per MiniLM layer"
    assert "EmbedLayerNormalization" in ops and "SkipLayerNormalization" in ops


def test_the_fused_fp32_graph_gives_torchs_vectors(onnx_fp32, encoder):
    cosine = (onnx_fp32.encode(TEXTS) * encoder.encode(TEXTS)).sum(axis=1)
    assert cosine.min() > 0.9999


def test_a_text_padded_in_a_batch_gets_the_vector_it_gets_alone(onnx_fp32):
    batch = onnx_fp32.encode(TEXTS)  # descriptions of very different lengths: most rows are padded
    alone = np.stack([onnx_fp32.encode([t])[0] for t in TEXTS[:8]])
    assert (batch[:8] * alone).sum(axis=1).min() > 0.9999


def test_the_int8_graph_is_quantised_from_the_fused_one(onnx_encoder, encoder):
    ops = [n.op_type for n in onnx.load(str(onnx_encoder.path)).graph.node]
    assert ops.count("QAttention") == 6 and "MatMulInteger" in ops and "QEmbedLayerNormalization" in ops
    assert onnx_encoder.name == "all-MiniLM-L6-v2+onnx-int8"
    # Judged by the drift benchmark, not by cosine (bench/RESULTS.md); this only guards a broken graph.
    assert (onnx_encoder.encode(TEXTS) * encoder.encode(TEXTS)).sum(axis=1).mean() > 0.9


def _not_a_transformer(path) -> None:
    x = helper.make_tensor_value_info("input_ids", TensorProto.FLOAT, ["batch", "sequence"])
    y = helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "sequence"])
    graph = helper.make_graph([helper.make_node("Relu", ["input_ids"], ["last_hidden_state"])], "plain", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_an_export_the_optimizer_cannot_fuse_is_kept_unfused(tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_module, "_export_torch", lambda folder, dst: _not_a_transformer(dst))
    path = onnx_module.export(model_dir(), tmp_path, quantized=False)
    assert [n.op_type for n in onnx.load(str(path)).graph.node] == ["Relu"]
    assert not list(tmp_path.glob("*.tmp")), "no temporary file is left behind"


# --- model2vec ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_static(tmp_path_factory):
    """A model2vec model distilled here from the packaged MiniLM, on a vocabulary cut to the
    special tokens and the tokens starting with a-c (a few seconds instead of a minute)."""
    out = tmp_path_factory.mktemp("m2v") / "tiny"
    return distil(model_dir(), out, pca_dims=16, token_remove_pattern=r"^(?!\[|[a-c]).*")


def test_a_locally_distilled_static_model_encodes_unit_vectors(tiny_static):
    assert is_static_model(tiny_static)
    enc = build_encoder("model2vec", model=str(tiny_static))
    assert isinstance(enc, StaticEncoder) and enc.dim == 16 and enc.name == "tiny+model2vec"
    vectors = enc.encode(["a cat became a bat", "cabbage and beans", "a cat became a bat"])
    assert vectors.shape == (3, 16) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-3)
    assert np.array_equal(vectors[0], vectors[2])
    assert enc.encode([]).shape == (0, 16)


def test_the_model2vec_backend_is_chosen_by_setting(tiny_static, tmp_path):
    settings = DriftSettings.model_validate({"drift_encoder_backend": "model2vec",
                                             "drift_encoder_model": str(tiny_static), "drift_onnx_dir": str(tmp_path)})
    enc = DriftService(settings)._load_encoder()
    assert isinstance(enc, StaticEncoder) and enc.dim == 16


def test_a_distilled_model_is_cached_and_reused(tiny_static, tmp_path, monkeypatch):
    """Without a model2vec folder configured, the MiniLM is distilled once into the cache;
    a later start loads it from there."""
    from lookout.drift import static_encoder

    target = tmp_path / f"model-model2vec-{onnx_module._fingerprint(model_dir())}"
    calls = []

    def fake_distil(source, out):  # the tiny model stands in for the minute-long full distillation
        calls.append(out)
        out.mkdir(parents=True)
        for f in tiny_static.iterdir():
            (out / f.name).write_bytes(f.read_bytes())
        return out

    monkeypatch.setattr(static_encoder, "distil", fake_distil)
    first = build_encoder("model2vec", cache_dir=str(tmp_path))
    second = build_encoder("model2vec", cache_dir=str(tmp_path))
    assert calls == [target] and first.name == second.name == "all-MiniLM-L6-v2+model2vec"
    assert json.loads((target / "config.json").read_text())["model_type"] == "model2vec"


def test_identical_texts_in_a_call_are_embedded_once(onnx_fp32, monkeypatch):
    rows = []
    forward = onnx_fp32._forward
    monkeypatch.setattr(onnx_fp32, "_forward", lambda encodings: rows.append(len(encodings)) or forward(encodings))
    texts = [TEXTS[0], TEXTS[1], TEXTS[0], TEXTS[0], TEXTS[2]]
    vectors = onnx_fp32.encode(texts)
    assert sum(rows) == 3
    assert np.array_equal(vectors[0], vectors[2]) and np.array_equal(vectors[0], vectors[3])
    assert (vectors[[0, 1, 4]] * onnx_fp32.encode(TEXTS[:3])).sum(axis=1).min() > 0.9999


def test_the_onnx_thread_pool_is_set_by_the_service_settings(onnx_cache):
    settings = DriftSettings.model_validate({"drift_encoder_backend": "onnx", "drift_onnx_dir": str(onnx_cache),
                                             "drift_encoder_threads": 1})
    enc = DriftService(settings)._load_encoder()
    assert isinstance(enc, onnx_module.OnnxEncoder)
    options = enc.session.get_session_options()
    assert options.intra_op_num_threads == 1
    # Not spinning unless asked: the service shares its cores with the broker client and chdb.
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    spinning = DriftSettings.model_validate({**settings.model_dump(), "drift_encoder_spinning": True})
    enc = DriftService(spinning)._load_encoder()
    assert isinstance(enc, onnx_module.OnnxEncoder)
    assert enc.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "1"
