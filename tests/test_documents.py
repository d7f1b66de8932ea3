"""The typed documents read back what was written: analysis.json, plan.json and the
analysis parameters round-trip, and older documents without newer fields still read."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime

from analytics.analysis.params import AnalysisParams, growthbook_split
from analytics.analysis.user_periods import PeriodParams
from analytics.documents import AnalysisDocument, clean
from rollout.documents import PlanDocument
from tests.reference.make_demo_golden import GOLDEN


def _golden_analysis() -> dict:
    return json.loads((GOLDEN / "analysis.json").read_text())


def test_analysis_json_round_trips_exactly() -> None:
    data = _golden_analysis()
    document = AnalysisDocument.from_json(data)
    assert document.to_json() == data
    assert AnalysisDocument.from_json(document.to_json()) == document


def test_analysis_document_reads_by_attribute() -> None:
    document = AnalysisDocument.from_json(_golden_analysis())
    assert document.treatments == ["1"]
    drift = {row.metric: row for row in document.behavior_drift}
    assert drift["agreement_rate"].significant and drift["agreement_rate"].effect > 0
    assert document.adaptation.labels["adapted"] == 412
    assert document.adaptation.half_life is not None
    assert document.variation_names == {}  # no GrowthBook names pulled for the demo


def test_an_older_analysis_without_newer_fields_still_reads() -> None:
    data = _golden_analysis()
    for row in data["behavior_drift"]:
        del row["q_value"], row["significant"], row["psi"]
    del data["style_shift_by_days"], data["variation_names"]
    document = AnalysisDocument.from_json(data)
    assert document.behavior_drift[0].q_value is None  # its default
    assert document.behavior_drift[0].psi is None  # no default: None
    assert document.style_shift_by_days == [] and document.variation_names == {}


def test_clean_makes_json_safe_values() -> None:
    import numpy as np

    assert clean(float("nan")) is None and clean(np.float64("inf")) is None
    assert clean(np.int64(3)) == 3 and type(clean(np.int64(3))) is int
    assert clean("text") == "text" and clean([1]) == [1]


def test_plan_json_reads_as_the_planner_wrote_it() -> None:
    data = json.loads(gzip.decompress((GOLDEN / "plan.json.gz").read_bytes()))
    document = PlanDocument.from_json(data)
    assert document.strategy == data["strategy"] and document.alpha == data["policy"]["alpha"]
    assert [o.strategy for o in document.options] == [o["strategy"] for o in data["options"]]
    assert len(document.stages) == len(data["stages"])
    for stage, raw in zip(document.stages, data["stages"], strict=True):
        assert (stage.index, stage.cohort, stage.kind) == (raw["index"], raw["cohort"], raw["kind"])
        assert stage.serving == raw["serving"]
        assert stage.saved_group_sizes == {
            name: len(members) for name, members in raw["growthbook"]["savedGroups"].items()
        }
    assert document.stage(-1) is None and document.stage(len(data["stages"])) is None


def test_analysis_params_round_trip() -> None:
    params = AnalysisParams(
        "exp",
        control="a",
        weights=(0.3, 0.7),
        variation_names=(("a", "Control"), ("b", "New")),
        periods=PeriodParams(pre_days=14.0, until=datetime(2026, 11, 2, tzinfo=UTC)),
    )
    stored = json.loads(json.dumps(params.to_json()))
    assert AnalysisParams.from_json(stored) == params
    # Fields a run of an older version did not store take their defaults.
    assert AnalysisParams.from_json({"experiment_id": "exp"}) == AnalysisParams("exp")
    stored["adaptation"]["retired_field"] = 1
    assert AnalysisParams.from_json(stored) == params


def test_growthbook_split_orders_control_first() -> None:
    experiment = {
        "variations": [
            {"variationId": "v1", "key": "1", "name": "New model"},
            {"variationId": "v0", "key": "0", "name": "Control"},
        ],
        "phases": [
            {
                "trafficSplit": [
                    {"variationId": "v1", "weight": 0.8},
                    {"variationId": "v0", "weight": 0.2},
                ]
            }
        ],
    }
    weights, names = growthbook_split(experiment, control="0")
    assert weights == (0.2, 0.8)
    assert dict(names) == {"1": "New model", "0": "Control"}
    assert growthbook_split({**experiment, "phases": []}, control="0")[0] is None
