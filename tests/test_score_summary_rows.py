"""The CLIP score summary is a typed row: the same figures as the summary frame, split keys only when split
by them, a versioned JSON form whose schema is written from the type, and a mistyped field is an error."""

from __future__ import annotations

import pandas as pd
import pytest
from pydantic import ValidationError

from harness.scoring.summary import (
    GROUP_KEYS,
    ScoreSummaryRow,
    summarise_scores,
    summary_columns,
    summary_records,
    summary_rows,
)


def scores() -> pd.DataFrame:
    return pd.DataFrame({
        "scorer": ["s"] * 6, "target": ["a", "a", "a", "b", "b", "b"], "metric": ["clip_t_cos"] * 6,
        "kind": ["edit", "edit", "text-to-image", "edit", "edit", "edit"],
        "challenge_id": ["c1", "c1", "c2", "c1", "c2", "c3"], "variant": ["default"] * 6,
        "value": [0.2, 0.4, 0.3, 0.1, 0.1, 0.1], "higher_is_better": [True] * 6,
        "truncated": pd.array([False, False, True, False, False, False], dtype="boolean"),
    })


def test_typed_rows_carry_the_summary_figures_and_only_the_split_keys() -> None:
    summary = summarise_scores(scores())
    rows = summary_rows(summary)
    assert [r.as_dict() for r in rows] == summary_records(summary)
    assert rows[0].to_json()["schema_version"] == 1 and next(iter(rows[0].to_json())) == "schema_version"
    assert "kind" not in rows[0].as_dict()
    split = summary_rows(summarise_scores(scores(), by=("target", "kind")))
    assert {(r.target, r.kind) for r in split} == {("a", "edit"), ("a", "text-to-image"), ("b", "edit")}
    assert summary_columns(summary)["a"]["clip_t_cos_n"] == 3


def test_one_prompt_gives_no_interval_rather_than_a_number() -> None:
    frame = scores()
    frame["challenge_id"] = "c1"
    (row, *_) = summary_rows(summarise_scores(frame))
    assert row.low is None and row.high is None


def test_a_mistyped_or_misspelt_field_is_an_error_and_the_schema_comes_from_the_type() -> None:
    good = summary_records(summarise_scores(scores()))[0]
    with pytest.raises(ValidationError):
        ScoreSummaryRow.from_dict({**good, "n_images": "three"})
    with pytest.raises(ValidationError):
        ScoreSummaryRow.from_dict({**good, "meen": 0.3})
    schema = ScoreSummaryRow.json_schema()
    assert schema["$id"].endswith("score-summary-row:v1") and schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(ScoreSummaryRow.model_fields)
    assert "schema_version" in schema["required"] and not set(GROUP_KEYS) & set(schema["required"])
