"""The RealHumanEval converter (``tools/realhumaneval.py``), on a hand-written sample of the
study's ``chat_data.csv`` (multi-line cells, a reply logged without its request)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from rollout.cli.app import app
from tools import realhumaneval

SAMPLE = Path(__file__).parent / "data" / "realhumaneval_chat_sample.csv"


def test_each_programmer_is_exposed_once_to_their_models_variation() -> None:
    exposures, interactions, left_out = realhumaneval.convert(pd.read_csv(SAMPLE))

    assert exposures.to_dict("records") == [
        {
            "user_id": "rhe-3",
            "timestamp": "2024-02-01T00:00:00+00:00",
            "experiment_id": "realhumaneval-chat",
            "variation_id": "3",
            "feature_key": "coding-assistant-chat",
        },
        {
            "user_id": "rhe-7",
            "timestamp": "2024-02-01T01:00:00+00:00",
            "experiment_id": "realhumaneval-chat",
            "variation_id": "0",
            "feature_key": "coding-assistant-chat",
        },
        {
            "user_id": "rhe-11",
            "timestamp": "2024-02-01T02:00:00+00:00",
            "experiment_id": "realhumaneval-chat",
            "variation_id": "1",
            "feature_key": "coding-assistant-chat",
        },
    ]
    assert left_out == [3]
    second = interactions.iloc[1]
    assert second["prompt"] == "And the product?\nPlease, only the standard library."
    assert second["timestamp"] == "2024-02-01T01:01:35.500000+00:00"
    assert list(interactions["event_id"]) == ["rhe-0", "rhe-1", "rhe-3", "rhe-4"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model": "Claude (chat)"}, "unknown model(s) Claude (chat)"),
        ({"request": "[{'content': 'hi', 'role': 'assistant'}]"}, "row 1: request is not"),
        ({"request": "not a list"}, "row 1: request is not"),
    ],
)
def test_a_malformed_first_row_is_named(change: dict[str, str], message: str) -> None:
    chat = pd.read_csv(SAMPLE)
    for column, value in change.items():
        chat.loc[0, column] = value
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        realhumaneval.convert(chat)


def test_a_programmer_in_two_arms_is_refused() -> None:
    chat = pd.read_csv(SAMPLE)
    chat.loc[1, "model"] = "GPT-4o (chat)"
    with pytest.raises(ValueError, match=r"more than one arm: \[7\]"):
        realhumaneval.convert(chat)


def test_the_files_ingest_without_rejects(cli_env: str, tmp_path: Path) -> None:
    assert realhumaneval.main([str(SAMPLE), str(tmp_path)]) == 0
    runner = CliRunner()
    for kind, rows in (("exposures", 3), ("interactions", 4)):
        result = runner.invoke(app, ["ingest", kind, str(tmp_path / f"{kind}.csv")])
        assert result.exit_code == 0, result.output
        assert f"{rows} rows read, {rows} inserted, 0 duplicate, 0 rejected" in result.output
