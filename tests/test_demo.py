"""The demo generator: deterministic, tells the documented story, and writes readable files."""

from __future__ import annotations

import gzip
import io
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from scipy import stats

from analytics.demo import (
    CONTROL_MODEL,
    REFUSAL,
    TREATMENT_MODEL,
    DemoConfig,
    DemoData,
    generate_demo,
    write_demo,
)
from analytics.ingest.contract import EXPOSURES, INTERACTIONS

EXPOSURE_COLUMNS = list(EXPOSURES.columns)
INTERACTION_COLUMNS = list(INTERACTIONS.columns)
TRUTH_COLUMNS = [
    "user_id",
    "variation",
    "is_new",
    "adaptive",
    "activity_rate",
    "adaptation_amplitude",
    "first_exposure",
    "multiple_exposure",
]
# Detectors as an analysis would write them (non-capturing groups: pandas warns otherwise).
MARKERS = {
    "hedge": r"\b(?:I think|maybe|perhaps|not sure|seems|possibly)\b",
    "pushback": r"(?:not right|wrong|disagree|incorrect|not what I asked|doubt that)",
    "constraint": r"\b(?:only|must|do not|exactly)\b",
    "polite": r"\b(?:please|thanks?|thank you|would you mind)\b",
    "code": r"```",
}
SYCOPHANCY = r"(?:absolutely right|great idea|great question|excellent point)"
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _frame(data: DemoData) -> pd.DataFrame:
    """Interactions joined to the ground truth, with the per-row style flags."""
    truth = data.truth.to_pandas()
    truth["fe"] = pd.to_datetime(truth["first_exposure"].replace("", None), utc=True)
    df = data.interactions.to_pandas().merge(truth, on="user_id", validate="many_to_one")
    df["ts"] = pd.to_datetime(df["timestamp"], utc=True)
    df["post"] = df["ts"] >= df["fe"]
    df["prompt_words"] = df["prompt"].str.split().str.len()
    df["response_words"] = df["response"].str.split().str.len()
    for name, pattern in MARKERS.items():
        df[name] = df["prompt"].str.contains(pattern, case=False, regex=True)
    df["sycophantic"] = df["response"].str.contains(SYCOPHANCY, case=False, regex=True)
    df["refusal"] = df["response"] == REFUSAL
    return df


def _did(df: pd.DataFrame, users: pd.Series, metric: str) -> float:
    """(post - pre) of ``users`` minus (post - pre) of control users."""

    def change(rows: pd.DataFrame) -> float:
        return float(rows.loc[rows["post"], metric].mean() - rows.loc[~rows["post"], metric].mean())

    control = df[(df["variation"] == "0") & ~df["multiple_exposure"] & ~df["is_new"]]
    return change(df[df["user_id"].isin(users)]) - change(control)


@pytest.fixture(scope="module")
def demo() -> DemoData:
    return generate_demo(DemoConfig(n_users=1500, seed=11))


@pytest.fixture(scope="module")
def frame(demo: DemoData) -> pd.DataFrame:
    return _frame(demo)


def test_tables_have_the_contract_columns_and_types(demo: DemoData) -> None:
    assert demo.exposures.column_names == EXPOSURE_COLUMNS
    assert demo.interactions.column_names == INTERACTION_COLUMNS
    assert demo.truth.column_names == TRUTH_COLUMNS
    assert all(f.type == pa.string() for f in demo.exposures.schema)
    types = {f.name: f.type for f in demo.interactions.schema}
    assert types["latency_ms"] == pa.float64()
    assert {types[c] for c in ("feedback", "complaint", "retry")} == {pa.int8()}
    assert all(types[c] == pa.string() for c in INTERACTION_COLUMNS[:7])


def test_same_seed_same_bytes_and_different_seed_differs(tmp_path: Path) -> None:
    config = DemoConfig(n_users=300, seed=5)
    written = []
    for run, cfg in enumerate((config, config, DemoConfig(n_users=300, seed=6))):
        for fmt in ("csv", "jsonl", "parquet"):
            paths = write_demo(generate_demo(cfg), tmp_path / f"{run}-{fmt}", fmt=fmt, gzip=True)
            written.append({name: path.read_bytes() for name, path in paths.items()})
    first, again, other = written[:3], written[3:6], written[6:]
    assert first == again
    for a, b in zip(first, other, strict=True):
        assert a["interactions"] != b["interactions"]
        assert a["truth"] != b["truth"]


def test_ids_timestamps_and_ordering(demo: DemoData, frame: pd.DataFrame) -> None:
    cfg = DemoConfig()
    assert frame["event_id"].is_unique
    assert (
        frame["event_id"]
        .str.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
        .all()
    )
    assert frame["user_id"].str.fullmatch(r"u\d{6}").all()
    for table in (demo.interactions, demo.exposures):
        assert all(ISO_MS.match(t) for t in table.column("timestamp").to_pylist())
    stamps = pd.to_datetime(demo.interactions.column("timestamp").to_pandas(), utc=True)
    assert stamps.is_monotonic_increasing
    assert stamps.min() >= cfg.start and stamps.max() < cfg.end
    assert frame["prompt"].str.contains("\n").any()  # fenced code blocks span lines
    assert frame["session_id"].nunique() < len(frame)  # sessions hold several turns


def test_exposures_follow_growthbook_convention(demo: DemoData, frame: pd.DataFrame) -> None:
    cfg = DemoConfig()
    exposures = demo.exposures.to_pandas()
    truth = demo.truth.to_pandas().set_index("user_id")
    assert set(exposures["experiment_id"]) == {"chat-model-upgrade"}
    assert set(exposures["feature_key"]) == {"chat-model"}
    attributes = exposures["attributes"].map(json.loads)
    assert (attributes.str["id"] == exposures["user_id"]).all()
    assert set(attributes.iloc[0]) == {"id", "country", "plan"}
    assert set(exposures["user_id"]) <= set(frame["user_id"])  # every exposed user is active

    first = exposures.sort_values("timestamp").groupby("user_id").first()
    assert (first["timestamp"] == truth.loc[first.index, "first_exposure"]).all()
    assert (first["variation_id"] == truth.loc[first.index, "variation"]).all()
    assert (pd.to_datetime(first["timestamp"], utc=True) >= cfg.experiment_start).all()
    # Exposure fires a few ms before the first interaction in the experiment.
    first_post = frame[frame["ts"] >= cfg.experiment_start].groupby("user_id")["ts"].min()
    lag = first_post.loc[first.index] - pd.to_datetime(first["timestamp"], utc=True)
    assert lag.between(pd.Timedelta(0), pd.Timedelta(seconds=1)).all()
    per_user = exposures.groupby("user_id").size()
    assert (per_user > 1).mean() > 0.5 and 1.5 < per_user.mean() < 4.5
    assert set(truth.index[truth["variation"] != ""]) == set(exposures["user_id"])


def test_multiple_exposures_are_rare_and_span_two_variations(demo: DemoData) -> None:
    exposures = demo.exposures.to_pandas()
    truth = demo.truth.to_pandas()
    variations = exposures.groupby("user_id")["variation_id"].nunique()
    multi = truth.loc[truth["multiple_exposure"], "user_id"]
    assert 1 <= len(multi) <= 0.02 * len(variations)
    assert (variations.loc[multi] == 2).all()
    assert (variations.drop(multi) == 1).all()


def test_new_users_arrive_during_the_experiment(demo: DemoData, frame: pd.DataFrame) -> None:
    truth = demo.truth.to_pandas()
    assert 0.1 < truth["is_new"].mean() < 0.2
    new = frame[frame["is_new"]]
    assert len(new) > 0
    assert (new["ts"] >= new["fe"]).all()
    assert (new["ts"] >= DemoConfig().experiment_start).all()
    assert 0.4 < truth["activity_rate"].mean() < 0.6


def test_model_versions_switch_at_first_exposure(frame: pd.DataFrame) -> None:
    assert (frame.loc[~frame["post"], "model_version"] == CONTROL_MODEL).all()
    post = frame[frame["post"]]
    expected = post["variation"].map({"0": CONTROL_MODEL, "1": TREATMENT_MODEL})
    assert (post["model_version"] == expected).all()


def test_treatment_model_behaves_differently(frame: pd.DataFrame) -> None:
    post = frame[frame["post"]]
    treated, control = post[post["variation"] == "1"], post[post["variation"] == "0"]
    assert treated["sycophantic"].mean() > 0.45
    assert control["sycophantic"].mean() < 0.15
    assert frame.loc[~frame["post"], "sycophantic"].mean() < 0.15
    ratio = treated["response_words"].mean() / control["response_words"].mean()
    assert 1.2 < ratio < 1.4
    assert 105 < control["response_words"].mean() < 135
    assert treated["feedback"].mean() > control["feedback"].mean()
    # Null metrics: same distributions everywhere.
    assert stats.ks_2samp(treated["latency_ms"], control["latency_ms"]).pvalue > 0.001
    assert 800 < frame["latency_ms"].median() < 1000
    for metric, rate in (("refusal", 0.02), ("complaint", 0.03), ("retry", 0.06)):
        assert abs(treated[metric].mean() - rate) < 0.015
        assert abs(control[metric].mean() - rate) < 0.015


def test_prompts_look_like_the_documented_baseline(frame: pd.DataFrame) -> None:
    pre = frame[~frame["post"]]
    assert 27 < pre["prompt_words"].mean() < 33
    assert 0.11 < pre["hedge"].mean() < 0.21
    assert 0.05 < pre["pushback"].mean() < 0.11
    assert 0.11 < pre["constraint"].mean() < 0.2
    assert 0.25 < pre["polite"].mean() < 0.35
    assert 0.05 < pre["code"].mean() < 0.11
    assert pre["prompt"].str.endswith("```").mean() == pytest.approx(pre["code"].mean())


def test_adaptive_users_adapt_beyond_seasonal_drift(demo: DemoData, frame: pd.DataFrame) -> None:
    truth = demo.truth.to_pandas()
    exposed_v1 = truth[(truth["variation"] == "1") & ~truth["multiple_exposure"]]
    assert 0.3 < exposed_v1["adaptive"].mean() < 0.55
    assert not truth.loc[truth["variation"] != "1", "adaptive"].any()
    amplitude = truth.loc[truth["adaptive"], "adaptation_amplitude"]
    assert amplitude.between(0.6, 1.0).all()
    assert (truth.loc[~truth["adaptive"], "adaptation_amplitude"] == 0).all()
    # Heavy users adapt more often.
    assert (
        exposed_v1.loc[exposed_v1["adaptive"], "activity_rate"].median()
        > exposed_v1.loc[~exposed_v1["adaptive"], "activity_rate"].median()
    )

    adaptive = exposed_v1.loc[exposed_v1["adaptive"] & ~exposed_v1["is_new"], "user_id"]
    assert _did(frame, adaptive, "prompt_words") > 4
    assert _did(frame, adaptive, "hedge") > 0.15
    assert _did(frame, adaptive, "pushback") > 0.12
    assert _did(frame, adaptive, "constraint") > 0.15
    assert abs(_did(frame, adaptive, "polite")) < 0.06
    assert abs(_did(frame, adaptive, "code")) < 0.05
    steady = exposed_v1.loc[~exposed_v1["adaptive"] & ~exposed_v1["is_new"], "user_id"]
    assert abs(_did(frame, steady, "prompt_words")) < 2
    assert abs(_did(frame, steady, "hedge")) < 0.05


def test_seasonal_drift_shows_in_control(frame: pd.DataFrame) -> None:
    control = frame[(frame["variation"] == "0") & ~frame["is_new"]]
    post, pre = control[control["post"]], control[~control["post"]]
    assert post["prompt_words"].mean() - pre["prompt_words"].mean() > 0.5
    assert post["hedge"].mean() > pre["hedge"].mean()


def _read(path: Path, fmt: str) -> pd.DataFrame:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    if fmt == "parquet":
        return pq.read_table(io.BytesIO(raw)).to_pandas()
    if fmt == "jsonl":
        return pd.DataFrame([json.loads(line) for line in raw.decode("utf-8").splitlines()])
    # Prompts with code blocks hold newlines inside quoted CSV fields.
    parse = pacsv.ParseOptions(newlines_in_values=True)
    names = pacsv.read_csv(io.BytesIO(raw), parse_options=parse).column_names
    numeric = ("latency_ms", "feedback", "complaint", "retry")
    types = {n: pa.string() for n in names if n not in numeric}
    options = pacsv.ConvertOptions(column_types=types, strings_can_be_null=False)
    table = pacsv.read_csv(io.BytesIO(raw), parse_options=parse, convert_options=options)
    return table.to_pandas()


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_written_files_round_trip(tmp_path: Path, fmt: str, gz: bool) -> None:
    data = generate_demo(DemoConfig(n_users=300, seed=2))
    paths = write_demo(data, tmp_path, fmt=fmt, gzip=gz)  # type: ignore[arg-type]
    suffix = f".{fmt}.gz" if gz else f".{fmt}"
    assert paths["exposures"].name == f"exposures{suffix}"
    assert paths["interactions"].name == f"interactions{suffix}"
    assert paths["truth"].name == "truth.csv"

    for name, columns in (("exposures", EXPOSURE_COLUMNS), ("interactions", INTERACTION_COLUMNS)):
        read = _read(paths[name], fmt)
        original = getattr(data, name).to_pandas()
        assert list(read.columns) == columns
        if fmt == "jsonl" and name == "exposures":
            assert isinstance(read["attributes"].iloc[0], dict)  # a nested object
            original["attributes"] = original["attributes"].map(json.loads)
        pd.testing.assert_frame_equal(read, original, check_dtype=False)

    truth = pacsv.read_csv(paths["truth"]).to_pandas()
    assert list(truth.columns) == TRUTH_COLUMNS and len(truth) == 300
    manifest = json.loads(paths["manifest"].read_text(encoding="utf-8"))
    assert manifest["rows"]["interactions"] == data.interactions.num_rows
    assert manifest["config"]["seed"] == 2
    assert manifest["experiment"]["models"] == {"0": CONTROL_MODEL, "1": TREATMENT_MODEL}


def test_three_variations() -> None:
    data = generate_demo(DemoConfig(n_users=1200, seed=4, variations=3))
    frame = _frame(data)
    truth = data.truth.to_pandas()
    shares = truth.loc[truth["variation"] != "", "variation"].value_counts(normalize=True)
    assert set(shares.index) == {"0", "1", "2"}
    assert shares.between(0.27, 0.40).all()
    assert set(data.exposures.column("variation_id").to_pylist()) == {"0", "1", "2"}
    post = frame[frame["post"]]
    by_variation = post.groupby("variation")
    assert (
        by_variation["model_version"].unique().map(list)
        == pd.Series({"0": [CONTROL_MODEL], "1": [TREATMENT_MODEL], "2": ["chat-alt-2"]})
    ).all()
    sycophancy = by_variation["sycophantic"].mean()
    assert sycophancy["1"] > 0.45 and sycophancy["0"] < 0.15 and sycophancy["2"] < 0.15
    words = by_variation["response_words"].mean()
    assert abs(words["2"] / words["0"] - 1) < 0.05
    assert not truth.loc[truth["variation"] == "2", "adaptive"].any()


def test_config_validation_and_naive_start() -> None:
    with pytest.raises(ValueError):
        DemoConfig(variations=1)
    with pytest.raises(ValueError):
        DemoConfig(new_user_share=1.5)
    naive = DemoConfig(start=datetime(2026, 10, 5))
    assert naive.start == datetime(2026, 10, 5, tzinfo=UTC)
    assert naive.experiment_start == datetime(2026, 10, 19, tzinfo=UTC)
    assert naive.model_for(3) == "chat-alt-3"


def test_tiny_config_still_works() -> None:
    data = generate_demo(DemoConfig(n_users=3, seed=1, pre_days=0, experiment_days=1))
    assert data.truth.num_rows == 3
    exposed = set(data.exposures.column("user_id").to_pylist())
    assert exposed <= set(data.interactions.column("user_id").to_pylist())
    assert data.interactions.column_names == INTERACTION_COLUMNS
