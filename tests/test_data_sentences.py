"""The clinical sentence: template filling, labels, number formats, missing values."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from ctsurv.data.sentences import clinical_sentence
from ctsurv.errors import ConfigError

PE_SPEC = yaml.safe_load("""
clinical:
  age: {type: int}
  sex: {type: category, categories: [female, male]}
  pe_acute: {type: bool}
  temperature: {type: float}
  respiratory_rate: {type: float}
  mean_arterial_pressure: {type: float}
  pulse: {type: float}
clinical_sentence: "A {age}-year-old {sex}, {pe_acute}, temperature {temperature}°F, respiratory rate {respiratory_rate} breaths per minute, mean arterial pressure {mean_arterial_pressure} mmHg, pulse {pulse} bpm."
labels:
  pe_acute: {true: "acute pulmonary embolism (not limited to subsegmental arteries)", false: "no acute pulmonary embolism"}
""")


def test_paper_example_sentence_from_a_typed_row():
    row = pd.Series({"age": 61, "sex": "female", "pe_acute": True, "temperature": 98.6, "respiratory_rate": 18.0,
                     "mean_arterial_pressure": 124.0, "pulse": 65.0})
    assert clinical_sentence(row, PE_SPEC) == (
        "A 61-year-old female, acute pulmonary embolism (not limited to subsegmental arteries), temperature 98.6°F, "
        "respiratory rate 18.0 breaths per minute, mean arterial pressure 124.0 mmHg, pulse 65.0 bpm."
    )


def test_missing_values_read_unknown_and_false_label_is_used():
    row = {"age": pd.NA, "sex": None, "pe_acute": False, "temperature": float("nan"), "respiratory_rate": 20.33333,
           "mean_arterial_pressure": 90.0, "pulse": pd.NA}
    text = clinical_sentence(row, PE_SPEC)
    assert text.startswith("A unknown-year-old unknown, no acute pulmonary embolism, temperature unknown°F")
    assert "respiratory rate 20.33 breaths" in text and text.endswith("pulse unknown bpm.")


def test_string_keys_labels_bools_without_labels_and_format_spec():
    spec = {"clinical_sentence": "{stage} {smoker} {x:.1f} {n}", "labels": {"stage": {"1": "early", 4: "late"}},
            "clinical": {"n": {"type": "int"}}}
    assert clinical_sentence({"stage": "4", "smoker": True, "x": 3.14159, "n": 7.0}, spec) == "late yes 3.1 7"
    assert clinical_sentence({"stage": "1", "smoker": False, "x": 2, "n": 0}, spec) == "early no 2.0 0"


def test_unknown_placeholder_names_the_fix():
    with pytest.raises(ConfigError, match=r"placeholder '\{bmi\}'"):
        clinical_sentence({"age": 3}, {"clinical_sentence": "{age} {bmi}"})
