"""Clinical-sentence features through the packaged MiniLM."""

from __future__ import annotations

import numpy as np
import pytest

from ctsurv.errors import ConfigError, DataError
from ctsurv.features import FeatureStore
from ctsurv.text_encoder import encode_clinical_sentences, encode_texts, resolve_text_model

SENTENCES = [
    "64 year-old male former smoker lung cancer patient, stage 1, T stage is T4, N stage is N1, M stage is M0.",
    "A 61-year-old female, acute pulmonary embolism, temperature 98.6°F, respiratory rate 18.0 breaths per minute.",
    "A 70-year-old female patient undergoing chest CT.",
]


def test_mean_pooling_matches_sentence_transformers_and_ignores_padding():
    from sentence_transformers import SentenceTransformer

    vectors = encode_texts(SENTENCES, "minilm", batch_size=3, device="cpu")
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    # The packaged pipeline is mean pooling followed by L2 normalisation.
    reference = SentenceTransformer(str(resolve_text_model("minilm")), device="cpu").encode(
        SENTENCES, normalize_embeddings=True)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    np.testing.assert_allclose(unit, reference, atol=1e-5)
    # The short sentence is padded in a batch with long ones; alone it has no padding.
    alone = encode_texts(SENTENCES[2:], "minilm", batch_size=1, device="cpu")
    np.testing.assert_allclose(alone[0], vectors[2], atol=1e-5)
    assert np.linalg.norm(vectors[0] - vectors[2]) > 0.1


def test_model_folder_resolution(tmp_path):
    assert (resolve_text_model("minilm") / "config.json").is_file()
    assert resolve_text_model(None) == resolve_text_model("minilm")
    with pytest.raises(ConfigError, match="Clinical-Longformer"):
        resolve_text_model(tmp_path / "no-model-here")


def test_sentence_store(tmp_path):
    out = encode_clinical_sentences(["a", "b"], SENTENCES[:2], tmp_path / "text", "minilm", device="cpu")
    store = FeatureStore(out)
    assert store.study_ids == ["a", "b"] and store.names() == ["pooled"]
    assert store.array("pooled").dtype == np.float16 and store.array("pooled").shape == (2, 384)
    with pytest.raises(DataError, match="study 'b'.*clinical_sentence"):
        encode_clinical_sentences(["a", "b"], [SENTENCES[0], "  "], tmp_path / "t2")
    with pytest.raises(DataError, match="2 study ids but 1 sentences"):
        encode_clinical_sentences(["a", "b"], [SENTENCES[0]], tmp_path / "t3")
