"""The GrowthBook REST client against a fake GrowthBook that checks everything against the spec.

Every request and response in every test is validated against GrowthBook's OpenAPI 5.0.1
document by the fake (the ``fake_growthbook`` fixture fails the test at teardown otherwise).
Time is a fake clock: retries and the rate limiter sleep on it, not for real.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from growthbook import GrowthBook
from growthbook.core import gbhash

from analytics.errors import ConfigError
from analytics.settings import Settings
from rollout.growthbook.client import (
    AppliedRules,
    GrowthBookClient,
    GrowthBookConflict,
    GrowthBookError,
    is_owned,
)
from tests.fake_growthbook import (
    API_KEY,
    FakeGrowthBook,
    Fault,
    fake_growthbook_fixture,  # noqa: F401 (the fixture ``fake_growthbook``)
    spec_validator,
)

TAG = "aftershock plan 3"
FEATURE = "chat-model"
ENVS = ["production"]
SEED = "aftershock:chat-model:unadapted"


@dataclass
class FakeClock:
    """Monotonic time that only moves when slept on."""

    now: float = 1_000.0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class World:
    """A fake GrowthBook holding an experiment and the feature it runs on."""

    fake: FakeGrowthBook
    experiment: dict[str, Any]
    experiment_rule: dict[str, Any]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def lines() -> list[str]:
    return []


def make_client(
    fake: FakeGrowthBook, clock: FakeClock, lines: list[str], **kwargs: Any
) -> GrowthBookClient:
    kwargs.setdefault("timeout", 2.0)
    return GrowthBookClient(
        fake.url, API_KEY, sleep=clock.sleep, clock=clock, echo=lines.append, **kwargs
    )


@pytest.fixture
def client(
    fake_growthbook: FakeGrowthBook, clock: FakeClock, lines: list[str]
) -> Iterator[GrowthBookClient]:
    with make_client(fake_growthbook, clock, lines) as gb:
        yield gb


@pytest.fixture
def world(fake_growthbook: FakeGrowthBook) -> World:
    experiment = fake_growthbook.add_experiment(
        "chat-model-upgrade", variations=["control", "treatment"], weights=[0.5, 0.5]
    )
    rule = fake_growthbook.experiment_rule(
        experiment["id"], ["old-model", "new-model"], environments=("production",)
    )
    fake_growthbook.add_feature(FEATURE, rules=[rule])
    return World(fake_growthbook, experiment, rule)


def cohort_rule(group_id: str, cohort: str, coverage: float | None = None) -> dict[str, Any]:
    """A rollback rule for one cohort's saved group, partial when ``coverage`` < 1."""
    rule: dict[str, Any] = {
        "description": f"{TAG}: cohort {cohort}",
        "value": "rollback-model",
        "savedGroups": [{"match": "any", "ids": [group_id]}],
    }
    if coverage is not None:
        rule |= {"coverage": coverage, "hashAttribute": "id", "seed": SEED, "hashVersion": 2}
    return rule


def live(fake: FakeGrowthBook) -> tuple[int, list[dict[str, Any]]]:
    feature = fake.features[FEATURE]
    return feature.live, feature.live_rules


# ------------------------------------------------------------------------------ reads


def test_lists_features_over_several_pages(
    fake_growthbook: FakeGrowthBook, client: GrowthBookClient
) -> None:
    fake_growthbook.max_limit = 2  # the client asks for 100; this server pages by 2
    for i in range(5):
        fake_growthbook.add_feature(f"feature-{i}")

    features = client.list_features()

    assert [f["id"] for f in features] == [f"feature-{i}" for i in range(5)]
    offsets = [r.query["offset"] for r in fake_growthbook.requests]
    assert offsets == [["0"], ["2"], ["4"]]
    assert client.get_feature("feature-3")["revision"]["version"] == 1


def test_reads_experiments_with_variations_weights_and_phases(
    fake_growthbook: FakeGrowthBook, client: GrowthBookClient
) -> None:
    fake_growthbook.max_limit = 2
    made = [
        fake_growthbook.add_experiment(
            f"exp-{i}", variations=["a", "b", "c"], weights=[0.2, 0.3, 0.5]
        )
        for i in range(3)
    ]

    listed = client.list_experiments()
    one = client.get_experiment(made[1]["id"])

    assert [e["id"] for e in listed] == [e["id"] for e in made]
    assert [v["name"] for v in one["variations"]] == ["a", "b", "c"]
    split = one["phases"][-1]["trafficSplit"]
    assert [s["weight"] for s in split] == [0.2, 0.3, 0.5]
    assert [s["variationId"] for s in split] == [v["variationId"] for v in one["variations"]]
    assert one["enhancedStatus"]["status"] == "Running"
    assert len(fake_growthbook.requests) == 3


def test_a_missing_feature_is_a_plain_error_naming_the_request(
    fake_growthbook: FakeGrowthBook, client: GrowthBookClient
) -> None:
    with pytest.raises(GrowthBookError) as caught:
        client.get_feature("nope")
    error = caught.value
    assert (error.method, error.path, error.status) == ("GET", "/api/v2/features/nope", 404)
    assert "Could not find feature" in str(error)
    assert len(fake_growthbook.requests) == 1  # a 404 is not retried


def test_a_wrong_key_is_refused_without_retrying(
    fake_growthbook: FakeGrowthBook, clock: FakeClock, lines: list[str]
) -> None:
    with (
        GrowthBookClient(fake_growthbook.url, "wrong", sleep=clock.sleep, clock=clock) as gb,
        pytest.raises(GrowthBookError, match="HTTP 401"),
    ):
        gb.list_features()
    assert len(fake_growthbook.requests) == 1


# ------------------------------------------------------------------------ saved groups


def test_upsert_saved_group_creates_then_is_idempotent_then_updates(
    fake_growthbook: FakeGrowthBook, client: GrowthBookClient
) -> None:
    group_id = client.upsert_saved_group("aftershock unadapted", "id", ["u2", "u1"])
    assert client.upsert_saved_group("aftershock unadapted", "id", ["u1", "u2", "u1"]) == group_id
    assert len(fake_growthbook.writes) == 1

    assert client.upsert_saved_group("aftershock unadapted", "id", ["u1", "u3"]) == group_id

    assert [(w.method, w.path) for w in fake_growthbook.writes] == [
        ("POST", "/api/v1/saved-groups"),
        ("POST", f"/api/v1/saved-groups/{group_id}"),
    ]
    assert fake_growthbook.writes[0].body == {
        "name": "aftershock unadapted",
        "type": "list",
        "attributeKey": "id",
        "values": ["u1", "u2"],
    }
    assert len(fake_growthbook.saved_groups) == 1
    assert fake_growthbook.saved_groups[group_id]["values"] == ["u1", "u3"]


def test_upsert_saved_group_refuses_ambiguous_or_foreign_groups(
    fake_growthbook: FakeGrowthBook, client: GrowthBookClient
) -> None:
    fake_growthbook.add_saved_group("twice", "id", [])
    fake_growthbook.add_saved_group("twice", "id", [])
    fake_growthbook.add_saved_group("by email", "email", ["a@b.c"])
    with pytest.raises(GrowthBookConflict, match="2 saved groups are named 'twice'"):
        client.upsert_saved_group("twice", "id", ["u1"])
    with pytest.raises(GrowthBookConflict, match="not a list on 'id'"):
        client.upsert_saved_group("by email", "id", ["u1"])
    assert fake_growthbook.writes == []


# --------------------------------------------------------------------------- apply_rules


def test_apply_rules_puts_new_rules_before_the_experiment_and_publishes(
    world: World, client: GrowthBookClient
) -> None:
    fake = world.fake
    group = client.upsert_saved_group("unadapted", "id", ["u1"])

    applied = client.apply_rules(
        FEATURE,
        [cohort_rule(group, "unadapted", 0.1), cohort_rule(group, "partial")],
        owner_tag=TAG,
        environments=ENVS,
    )

    version, rules = live(fake)
    assert applied == AppliedRules(version, applied.rule_ids, published=True)
    assert version == 2 and fake.features[FEATURE].revisions[2].status == "published"
    assert [r["id"] for r in rules] == [*applied.rule_ids, world.experiment_rule["id"]]
    assert rules[-1] == world.experiment_rule
    first, second = rules[0], rules[1]
    assert first["type"] == "rollout" and first["coverage"] == 0.1 and first["seed"] == SEED
    assert first["savedGroupTargeting"] == [{"matchType": "any", "savedGroups": [group]}]
    assert second["type"] == "force" and "coverage" not in second
    assert all(r["environments"] == ENVS and not r["allEnvironments"] for r in rules[:2])
    assert [w.path.rsplit("/", 1)[-1] for w in fake.writes[1:]] == [
        "revisions",
        "rules",
        "rules",
        "reorder",
        "publish",
    ]


def test_reapplying_the_same_rules_writes_nothing(world: World, client: GrowthBookClient) -> None:
    group = client.upsert_saved_group("unadapted", "id", ["u1"])
    rules = [cohort_rule(group, "unadapted", 0.25)]
    first = client.apply_rules(FEATURE, rules, owner_tag=TAG, environments=ENVS)
    writes = len(world.fake.writes)

    again = client.apply_rules(
        FEATURE, rules, owner_tag=TAG, environments=ENVS, expected_rule_ids=first.rule_ids
    )

    assert len(world.fake.writes) == writes
    assert again == AppliedRules(first.revision, first.rule_ids, published=False)


def test_a_coverage_step_updates_the_rule_in_place(world: World, client: GrowthBookClient) -> None:
    group = client.upsert_saved_group("unadapted", "id", ["u1"])
    first = client.apply_rules(
        FEATURE, [cohort_rule(group, "unadapted", 0.1)], owner_tag=TAG, environments=ENVS
    )
    writes = len(world.fake.writes)

    step = client.apply_rules(
        FEATURE,
        [cohort_rule(group, "unadapted", 0.3)],
        owner_tag=TAG,
        environments=ENVS,
        expected_rule_ids=first.rule_ids,
    )

    assert step.rule_ids == first.rule_ids and step.revision == first.revision + 1
    new_writes = world.fake.writes[writes:]
    assert [w.method for w in new_writes] == ["POST", "PUT", "POST"]  # draft, update, publish
    assert new_writes[1].body["rule"]["coverage"] == 0.3
    _, rules = live(world.fake)
    assert rules[0]["coverage"] == 0.3 and rules[1] == world.experiment_rule


def test_a_full_step_replaces_the_rollout_rule_and_a_dropped_cohort_is_deleted(
    world: World, client: GrowthBookClient
) -> None:
    group = client.upsert_saved_group("unadapted", "id", ["u1"])
    first = client.apply_rules(
        FEATURE,
        [cohort_rule(group, "unadapted", 0.5), cohort_rule(group, "partial")],
        owner_tag=TAG,
        environments=ENVS,
    )

    full = client.apply_rules(
        FEATURE,
        [cohort_rule(group, "unadapted", 1.0)],
        owner_tag=TAG,
        environments=ENVS,
        expected_rule_ids=first.rule_ids,
    )

    _, rules = live(world.fake)
    assert [r["id"] for r in rules] == [*full.rule_ids, world.experiment_rule["id"]]
    assert rules[0]["type"] == "force"  # GrowthBook cannot change a rule's type: re-created
    assert not set(full.rule_ids) & set(first.rule_ids)


def test_foreign_rules_are_never_touched_and_keep_their_order(
    world: World, client: GrowthBookClient
) -> None:
    fake = world.fake
    foreign = [
        {"description": "aftershock plan 30: another plan", "value": "x"},
        {"description": "manual override for QA", "value": "y", "enabled": False},
    ]

    def add_foreign(rules: list[dict[str, Any]]) -> None:
        for body in foreign:
            rules.insert(0, {"id": fake.new_rule_id(), "type": "force", "enabled": True, **body})
            rules[0]["allEnvironments"] = True

    fake.edit_live(FEATURE, add_foreign)
    _, before = live(fake)
    group = client.upsert_saved_group("unadapted", "id", ["u1"])

    applied = client.apply_rules(
        FEATURE, [cohort_rule(group, "unadapted", 0.2)], owner_tag=TAG, environments=ENVS
    )
    client.apply_rules(
        FEATURE,
        [cohort_rule(group, "unadapted", 0.4)],
        owner_tag=TAG,
        environments=ENVS,
        expected_rule_ids=applied.rule_ids,
    )

    _, after = live(fake)
    assert after[0]["id"] == applied.rule_ids[0]
    assert after[1:] == before  # same rules, same contents, same relative order
    touched = {w.path.rsplit("/", 1)[-1] for w in fake.writes if w.method in ("PUT", "DELETE")}
    assert touched == {applied.rule_ids[0]}


def _add_tagged_rule(fake: FakeGrowthBook) -> None:
    def edit(rules: list[dict[str, Any]]) -> None:
        rules.append(
            {
                "id": fake.new_rule_id(),
                "description": f"{TAG}: added by hand",
                "enabled": True,
                "type": "force",
                "value": "z",
                "allEnvironments": True,
            }
        )

    fake.edit_live(FEATURE, edit)


def _retag_foreign_rule(fake: FakeGrowthBook) -> None:
    fake.edit_live(FEATURE, lambda rules: rules[-1].update(description=f"{TAG} experiment"))


def _remove_ours(fake: FakeGrowthBook) -> None:
    fake.edit_live(FEATURE, lambda rules: rules.pop(0))


@pytest.mark.parametrize("edit", [_add_tagged_rule, _retag_foreign_rule, _remove_ours])
def test_refuses_when_the_owned_rules_are_not_the_ones_it_wrote(
    world: World, client: GrowthBookClient, edit: Any
) -> None:
    fake = world.fake
    group = client.upsert_saved_group("unadapted", "id", ["u1"])
    applied = client.apply_rules(
        FEATURE, [cohort_rule(group, "unadapted", 0.1)], owner_tag=TAG, environments=ENVS
    )
    edit(fake)
    version, before = live(fake)
    writes = len(fake.writes)

    with pytest.raises(GrowthBookConflict) as caught:
        client.apply_rules(
            FEATURE,
            [cohort_rule(group, "unadapted", 0.3)],
            owner_tag=TAG,
            environments=ENVS,
            expected_rule_ids=applied.rule_ids,
        )

    assert "not the ones Aftershock wrote" in str(caught.value)
    assert "Nothing was changed" in caught.value.rerun
    assert live(fake) == (version, before) and len(fake.writes) == writes


def test_refuses_when_the_expected_ids_do_not_match(world: World, client: GrowthBookClient) -> None:
    group = client.upsert_saved_group("unadapted", "id", ["u1"])
    client.apply_rules(FEATURE, [cohort_rule(group, "a", 0.1)], owner_tag=TAG, environments=ENVS)
    with pytest.raises(GrowthBookConflict, match=r"missing .*fr_9999"):
        client.apply_rules(
            FEATURE,
            [cohort_rule(group, "a", 0.2)],
            owner_tag=TAG,
            environments=ENVS,
            expected_rule_ids=["fr_9999"],
        )


@pytest.mark.parametrize("moment", ["after the first rule write", "just before publishing"])
def test_refuses_when_someone_publishes_while_it_writes(
    world: World, clock: FakeClock, moment: str
) -> None:
    fake = world.fake
    other: list[int] = []

    def echo(line: str) -> None:  # runs after each response: the moment to interfere
        if other:
            return
        first_rule_write = "/rules -> 200" in line
        pre_publish_read = line.startswith(f"GET {fake.url}/api/v2/features/{FEATURE} ->")
        if first_rule_write if moment.startswith("after") else pre_publish_read:
            other.append(fake.edit_live(FEATURE, lambda rules: None))

    with GrowthBookClient(fake.url, API_KEY, sleep=clock.sleep, clock=clock, echo=echo) as gb:
        group = gb.upsert_saved_group("unadapted", "id", ["u1"])
        with pytest.raises(GrowthBookConflict, match="published by someone else"):
            gb.apply_rules(
                FEATURE, [cohort_rule(group, "unadapted")], owner_tag=TAG, environments=ENVS
            )

    version, rules = live(fake)
    assert version == other[0] and rules == [world.experiment_rule]
    drafts = [r.status for r in fake.features[FEATURE].revisions.values() if r.version != 1]
    assert sorted(drafts) == ["discarded", "published"]


def test_rejects_rules_it_could_not_own_or_tell_apart(client: GrowthBookClient) -> None:
    good = cohort_rule("grp_1", "a")
    with pytest.raises(ValueError, match="must start with"):
        client.apply_rules(
            FEATURE,
            [{**good, "description": "aftershock plan 30"}],
            owner_tag=TAG,
            environments=ENVS,
        )
    with pytest.raises(ValueError, match="unique"):
        client.apply_rules(FEATURE, [good, good], owner_tag=TAG, environments=ENVS)
    with pytest.raises(ValueError, match="hashAttribute"):
        client.apply_rules(FEATURE, [{**good, "coverage": 0.5}], owner_tag=TAG, environments=ENVS)
    assert is_owned(f"{TAG}: x", TAG) and is_owned(TAG, TAG)
    assert not is_owned(f"{TAG}0", TAG) and not is_owned("other", TAG)


# ------------------------------------------------------------- retries and rate limit


def test_a_429_burst_is_retried_after_retry_after(
    fake_growthbook: FakeGrowthBook, client: GrowthBookClient, clock: FakeClock
) -> None:
    fake_growthbook.add_feature(FEATURE)
    fake_growthbook.inject(Fault(status=429, retry_after=7, times=3))

    assert client.get_feature(FEATURE)["id"] == FEATURE

    assert [r.status for r in fake_growthbook.requests] == [429, 429, 429, 200]
    assert clock.sleeps == [7, 7, 7]


def test_stays_within_the_per_minute_limit(
    fake_growthbook: FakeGrowthBook, clock: FakeClock, lines: list[str]
) -> None:
    fake_growthbook.add_feature(FEATURE)
    fake_growthbook.inject(Fault(status=429, retry_after=1, times=2))
    sent: list[float] = []
    with GrowthBookClient(
        fake_growthbook.url,
        API_KEY,
        requests_per_minute=5,
        sleep=clock.sleep,
        clock=clock,
        echo=lambda line: sent.append(clock()) if line.startswith("GET ") else None,
    ) as gb:
        for _ in range(12):
            gb.get_feature(FEATURE)

    assert len(sent) == len(fake_growthbook.requests) == 14
    assert max(sum(1 for t in sent if start <= t < start + 60) for start in sent) == 5
    assert clock.now - 1_000.0 >= 120  # 14 requests at 5 a minute: two full waits


def test_server_errors_then_success(
    fake_growthbook: FakeGrowthBook, client: GrowthBookClient, clock: FakeClock
) -> None:
    fake_growthbook.add_feature(FEATURE)
    fake_growthbook.inject(Fault(status=502, times=2))

    assert client.get_feature(FEATURE)["id"] == FEATURE
    assert [r.status for r in fake_growthbook.requests] == [502, 502, 200]
    assert len(clock.sleeps) == 2 and all(0 < s <= 30 for s in clock.sleeps)


def test_timeouts_then_success(
    fake_growthbook: FakeGrowthBook, clock: FakeClock, lines: list[str]
) -> None:
    fake_growthbook.add_feature(FEATURE)
    fake_growthbook.inject(Fault(delay=2.0, times=2))
    with make_client(fake_growthbook, clock, lines, timeout=0.2) as gb:
        assert gb.get_feature(FEATURE)["id"] == FEATURE
    assert sum(line.startswith("GET ") and "ReadTimeout" in line for line in lines) == 2


def test_gives_up_after_max_attempts(
    fake_growthbook: FakeGrowthBook, clock: FakeClock, lines: list[str]
) -> None:
    fake_growthbook.inject(Fault(status=503, times=10))
    with (
        make_client(fake_growthbook, clock, lines, max_attempts=3) as gb,
        pytest.raises(GrowthBookError) as caught,
    ):
        gb.list_features()
    assert caught.value.status == 503 and caught.value.method == "GET"
    assert "gave up after 3 attempts" in str(caught.value)
    assert len(fake_growthbook.requests) == 3


def test_a_rate_limited_write_is_resent(
    fake_growthbook: FakeGrowthBook, client: GrowthBookClient
) -> None:
    fake_growthbook.inject(Fault(status=429, retry_after=2, writes_only=True, times=2))
    client.upsert_saved_group("g", "id", ["u1"])
    assert len(fake_growthbook.saved_groups) == 1


def test_a_write_of_unknown_outcome_is_not_resent_but_reconciled(
    world: World, clock: FakeClock, lines: list[str]
) -> None:
    fake = world.fake
    # The group is created but the answer is a 500; then a rule is added but the answer is lost.
    fake.inject(Fault(status=500, writes_only=True, handle=True))
    fake.inject(Fault(delay=2.0, writes_only=True, handle=True, skip=1))
    with make_client(fake, clock, lines, timeout=0.3) as gb:
        group = gb.upsert_saved_group("unadapted", "id", ["u1"])
        applied = gb.apply_rules(
            FEATURE, [cohort_rule(group, "unadapted", 0.3)], owner_tag=TAG, environments=ENVS
        )

    assert list(fake.saved_groups) == [group]
    _, rules = live(fake)
    assert [r["id"] for r in rules] == [*applied.rule_ids, world.experiment_rule["id"]]
    statuses = [r.status for r in fake.features[FEATURE].revisions.values()]
    assert statuses == ["published", "discarded", "published"]


@pytest.mark.parametrize("fail_at", [2, 3, 4])  # 1st rule add, 2nd rule add, reorder
def test_a_failure_between_writes_leaves_live_unchanged_and_a_rerun_converges(
    world: World, client: GrowthBookClient, fail_at: int
) -> None:
    fake = world.fake
    group = client.upsert_saved_group("unadapted", "id", ["u1"])
    rules = [cohort_rule(group, "unadapted", 0.3), cohort_rule(group, "partial")]
    fake.inject(
        Fault(status=403, message="forbidden for a while", writes_only=True, skip=fail_at - 1)
    )

    with pytest.raises(GrowthBookError) as caught:
        client.apply_rules(FEATURE, rules, owner_tag=TAG, environments=ENVS)

    error = caught.value
    assert error.status == 403 and "forbidden for a while" in str(error)
    assert "unchanged (still 1)" in error.rerun and "draft revision 2" in error.rerun
    assert "apply_rules('chat-model'" in error.rerun
    assert live(fake) == (1, [world.experiment_rule])

    applied = client.apply_rules(FEATURE, rules, owner_tag=TAG, environments=ENVS)

    _, live_rules = live(fake)
    assert [r["id"] for r in live_rules] == [*applied.rule_ids, world.experiment_rule["id"]]
    assert [r["description"] for r in live_rules[:2]] == [r["description"] for r in rules]
    assert fake.features[FEATURE].revisions[2].status == "discarded"
    again = client.apply_rules(
        FEATURE, rules, owner_tag=TAG, environments=ENVS, expected_rule_ids=applied.rule_ids
    )
    assert again.rule_ids == applied.rule_ids and not again.published


def test_writes_failing_for_good_give_up_after_a_few_fresh_passes(
    world: World, client: GrowthBookClient, clock: FakeClock
) -> None:
    fake = world.fake
    group = client.upsert_saved_group("unadapted", "id", ["u1"])
    fake.inject(Fault(status=500, writes_only=True, times=100))

    with pytest.raises(GrowthBookError) as caught:
        client.apply_rules(FEATURE, [cohort_rule(group, "a")], owner_tag=TAG, environments=ENVS)

    assert caught.value.status == 500 and "may or may not have been applied" in str(caught.value)
    assert "Nothing was changed on 'chat-model' (live revision still 1)" in caught.value.rerun
    passes = [r for r in fake.requests if r.query.get("withRevisions") == ["drafts"]]
    assert len(passes) == 3 and len(fake.writes) == 1 + 3  # the group, then one draft per pass
    assert live(fake) == (1, [world.experiment_rule])


def test_a_rerun_command_is_quoted_in_the_hint(world: World, client: GrowthBookClient) -> None:
    world.fake.inject(Fault(status=400, writes_only=True))
    with pytest.raises(GrowthBookError) as caught:
        client.apply_rules(
            FEATURE,
            [cohort_rule("grp_x", "a")],
            owner_tag=TAG,
            environments=ENVS,
            rerun_command="aftershock rollout apply --plan 3",
        )
    assert caught.value.rerun == (
        "Nothing was changed on 'chat-model' (live revision still 1). "
        "Re-run aftershock rollout apply --plan 3."
    )


# ------------------------------------------------------------------ dry run and secrets


def test_dry_run_prints_the_exact_writes_and_sends_none(
    world: World, clock: FakeClock, lines: list[str]
) -> None:
    fake = world.fake
    with make_client(fake, clock, lines, dry_run=True) as gb:
        group = gb.upsert_saved_group("unadapted", "id", ["u2", "u1"])
        applied = gb.apply_rules(
            FEATURE, [cohort_rule(group, "unadapted", 0.1)], owner_tag=TAG, environments=ENVS
        )

    assert fake.writes == [] and {r.method for r in fake.requests} == {"GET"}
    assert group == "dry-run-1" and applied == AppliedRules(1, ("dry-run-3",), published=False)
    heads = [block.splitlines()[0] for block in lines]
    assert heads == [
        f"[dry run, not sent] POST {fake.url}/api/v1/saved-groups",
        f"[dry run, not sent] POST {fake.url}/api/v2/features/{FEATURE}/revisions",
        f"[dry run, not sent] POST {fake.url}/api/v2/features/{FEATURE}/revisions/dry-run-2/rules",
        f"[dry run, not sent] POST {fake.url}/api/v2/features/{FEATURE}/revisions/dry-run-2"
        "/rules/reorder",
    ]
    head, body = lines[0].split("\n\n", 1)
    assert "authorization: Bearer ***" in head.splitlines()
    assert "content-type: application/json" in head.splitlines()
    expected = {"attributeKey": "id", "name": "unadapted", "type": "list", "values": ["u1", "u2"]}
    assert body == json.dumps(expected, indent=2, sort_keys=True)
    reorder = json.loads(lines[3].split("\n\n", 1)[1])
    assert reorder == {"ruleIds": ["dry-run-3", world.experiment_rule["id"]]}
    assert API_KEY not in "\n".join(lines)


def test_the_api_key_never_shows(
    fake_growthbook: FakeGrowthBook, clock: FakeClock, lines: list[str]
) -> None:
    fake_growthbook.add_feature(FEATURE)
    shown: list[str] = []
    fake_growthbook.inject(Fault(status=429, retry_after=1))
    fake_growthbook.inject(Fault(status=400, message=f"bad key {API_KEY}"))
    with make_client(fake_growthbook, clock, lines, max_attempts=2) as gb:
        shown += [repr(gb), str(gb.__dict__)]
        with pytest.raises(GrowthBookError) as caught:
            gb.get_feature(FEATURE)
        shown += [str(caught.value), repr(caught.value), caught.value.rerun]
        fake_growthbook.inject(Fault(status=500, times=5))
        with pytest.raises(GrowthBookError) as exhausted:
            gb.get_feature(FEATURE)
        shown += [str(exhausted.value), repr(exhausted.value)]
    assert "***" in str(caught.value)
    assert all(r.authorization == f"Bearer {API_KEY}" for r in fake_growthbook.requests)
    assert API_KEY not in "\n".join(shown + lines)


def test_a_client_from_settings_needs_both_settings() -> None:
    with pytest.raises(ConfigError, match="AFTERSHOCK_GROWTHBOOK_API_KEY"):
        GrowthBookClient.from_settings(
            Settings(_env_file=None, growthbook_url="https://gb.example", growthbook_api_key=None)
        )
    settings = Settings(
        _env_file=None, growthbook_url="https://gb.example/api/", growthbook_api_key=API_KEY
    )
    with GrowthBookClient.from_settings(settings) as gb:
        assert gb.base_url == "https://gb.example"
        assert repr(gb) == "GrowthBookClient('https://gb.example', api_key='***', dry_run=False)"


# ---------------------------------------------------------------- round trip with the SDK


def test_round_trip_with_the_official_sdk(world: World, client: GrowthBookClient) -> None:
    users = [f"u{i:05d}" for i in range(2_000)]
    full_cohort = set(users[::5])
    partial_cohort = set(users[1::3]) - full_cohort
    full = client.upsert_saved_group("aftershock chat-model unadapted", "id", sorted(full_cohort))
    partial = client.upsert_saved_group(
        "aftershock chat-model partial", "id", sorted(partial_cohort)
    )
    client.apply_rules(
        FEATURE,
        [cohort_rule(full, "unadapted"), cohort_rule(partial, "partial", 0.3)],
        owner_tag=TAG,
        environments=ENVS,
    )

    payload = world.fake.sdk_payload("production")
    rules = payload["features"][FEATURE]["rules"]
    assert rules[0]["condition"] == {"id": {"$inGroup": full}}
    assert rules[1]["seed"] == SEED and rules[1]["coverage"] == 0.3
    served = {}
    for uid in users:
        gb = GrowthBook(
            attributes={"id": uid},
            features=payload["features"],
            saved_groups=payload["savedGroups"],
        )
        try:
            served[uid] = gb.get_feature_value(FEATURE, "fallback")
        finally:
            gb.destroy()

    in_partial_coverage = {u for u in partial_cohort if (gbhash(SEED, u, 2) or 1.0) < 0.3}
    rolled_back = {u for u, value in served.items() if value == "rollback-model"}
    assert rolled_back == full_cohort | in_partial_coverage
    assert 0.2 < len(in_partial_coverage) / len(partial_cohort) < 0.4
    others = {served[u] for u in users if u not in rolled_back}
    assert others == {"old-model", "new-model"}  # everyone else stays in the experiment
    assert world.fake.sdk_payload("dev")["features"][FEATURE]["rules"] == []


# ------------------------------------------------------------------- the fake itself


def test_the_fake_refuses_and_records_requests_that_break_the_spec(
    world: World, fake_growthbook: FakeGrowthBook
) -> None:
    import httpx

    with httpx.Client(
        base_url=fake_growthbook.url, headers={"Authorization": f"Bearer {API_KEY}"}
    ) as http:
        bad_body = http.post(f"/api/v2/features/{FEATURE}/revisions", json={"bogus": True})
        bad_query = http.get("/api/v2/features", params={"limit": 1000})
    assert bad_body.status_code == bad_query.status_code == 400
    assert len(fake_growthbook.validation_failures) == 2
    fake_growthbook.validation_failures.clear()


def test_the_fake_records_responses_that_break_the_spec(
    world: World, fake_growthbook: FakeGrowthBook, client: GrowthBookClient
) -> None:
    fake_growthbook.features[FEATURE].live_rules[0]["bogus"] = 1
    client.get_feature(FEATURE)
    assert len(fake_growthbook.validation_failures) == 1
    assert "GET /v2/features/{id} response" in fake_growthbook.validation_failures[0]
    fake_growthbook.validation_failures.clear()


def test_the_relaxed_spec_still_rejects_unknown_fields() -> None:
    validator = spec_validator()
    pointer = "/components/schemas/FeatureRuleV2"
    rule = {
        "id": "fr_1",
        "description": "d",
        "enabled": True,
        "type": "rollout",
        "value": "v",
        "coverage": 0.5,
        "hashAttribute": "id",
        "allEnvironments": True,
    }
    assert validator.errors(pointer, rule) == []
    assert validator.errors(pointer, {**rule, "bogus": 1}) != []
    assert validator.errors(pointer, {**rule, "type": "force"}) != []  # force has no coverage
    assert validator.errors(pointer, {k: v for k, v in rule.items() if k != "id"}) != []
