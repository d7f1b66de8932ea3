"""Feature detectors: unit examples per feature, null handling, the demo's story, invariants."""

from __future__ import annotations

import re

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.demo import REFUSAL, SYCOPHANTIC_OPENERS, DemoConfig, DemoData, generate_demo
from analytics.features import (
    BEHAVIOR_METRICS,
    BEHAVIOR_SCHEMA,
    LEXICONS,
    METRICS,
    STORED_COLUMNS,
    STYLE_METRICS,
    STYLE_SCHEMA,
    compute_behavior_features,
    compute_interaction_features,
    compute_prompt_style_features,
    count_words,
)
from analytics.features import behavior as behavior_module
from analytics.features.lexicons import OPENING_CHARS, build_pattern
from analytics.features.metrics import describe_p, verdict
from analytics.models import InteractionFeatures

# The contract's metric names, in its order (DATA_CONTRACT.md, "Metric names").
CONTRACT_BEHAVIOR = [
    "response_length",
    "agreement_rate",
    "refusal_rate",
    "latency_ms",
    "feedback_score",
    "complaint_rate",
    "retry_rate",
]
CONTRACT_STYLE = [
    "prompt_length",
    "hedge_rate",
    "pushback_rate",
    "constraint_rate",
    "politeness_rate",
    "question_rate",
    "code_block_rate",
]
FENCE = "```"


def _style(texts: list[str | None]) -> dict[str, list[object]]:
    return compute_prompt_style_features(pa.array(texts, pa.string())).to_pydict()


def _flag(feature: str, text: str) -> bool:
    table = compute_prompt_style_features(pa.array([text], pa.string()))
    if feature not in table.column_names:
        table = compute_behavior_features(pa.array([text], pa.string()))
    value = table.column(feature)[0].as_py()
    assert isinstance(value, bool)
    return value


# --- Unit examples --------------------------------------------------------------------------

EXAMPLES = {
    "hedge": (
        [
            "Perhaps there is a simpler way.",
            "PERHAPS there is a simpler way.",
            "maybe I set it up wrong",
            "I think the bug is in the parser",
            "I’m not sure this is the best approach",
            "It seems like a config issue",
            "This might be a caching problem",
            "it's kind of slow on big files",
            "The answer could be wrong, correct me if I'm wrong",
            "IMO the second option is better",
        ],
        [
            "perhapsy is not a word",
            "Explain how sorting works.",
            "What kind of database should I use?",
            "It takes about ten minutes and usually fails.",
            "I am fairly new to this.",
            "A friend suggested I ask here first.",
            "You must assume an income of 3000 a month.",
            "Could you help me?",
            "I doubt that's correct.",
            "The thinking behind it is simple.",
        ],
    ),
    "politeness": (
        [
            "Could you please help me with this?",
            "please fix the test",
            "PLEASE fix the test",
            "Thanks in advance!",
            "Thank you so much",
            "I appreciate it.",
            "Sorry, one more thing: the loop.",
            "Would you mind helping me out?",
            "Hi! How do I parse JSON?",
            "hello there, how do I parse JSON?",
            "Great, now make it shorter.",
            "Fix the loop. Could you also add tests?",
        ],
        [
            "How would you parse a large CSV file?",
            "Can you fix the loop",
            "Explain the pleasant weather in Lisbon.",
            "Fix the thankless loop.",
            "This is a great library, how do I use it?",
            "Write a function.",
        ],
    ),
    "constraint": (
        [
            "Answer in exactly 3 bullet points.",
            "Do not include examples.",
            "don't use jargon",
            "You must keep it under 100 words.",
            "Use exactly two short paragraphs.",
            "Only use Python.",
            "Use only the standard library.",
            "Keep it to no more than five sentences.",
            "Respond in English.",
            "Return the result as JSON, please.",
            "Format the answer as a table.",
            "Write it in all lowercase letters.",
            "End your response with a question.",
            "Include the keywords cat and dog.",
            "Never use global variables.",
            "Explain X. Also, do not mention Y.",
            "Summarise it in 2 sentences.",
            "Write a 200-word summary.",
        ],
        [
            "I don't know why this fails.",
            "Never mind, I found it.",
            "This is the only way I know.",
            "The essay runs about two thousand words.",
            "How do I sort the items in a list?",
            "I must have missed a step.",
            "It must be a caching bug.",
            "This can only be done as root.",
            "English is my second language.",
            "The input has two million rows.",
            "What exactly is a monad?",
            "How do I avoid jet lag?",
        ],
    ),
    "pushback": (
        [
            "That's not right.",
            "No, that's wrong.",
            "Actually, I disagree with your last answer.",
            "Your previous answer was incorrect.",
            "That is not what I asked for.",
            "I doubt that's correct, it contradicts what you said before.",
            "I don't think that's right. Are you sure?",
            "you're wrong about the complexity",
            "That doesn't work.",
            "You said it was O(n) but it is O(n^2).",
            "It still doesn't work.",
        ],
        [
            "What's wrong with my code?",
            "It is throwing an error on line 3.",
            "I know the answer is 42.",
            "Now write the tests.",
            "There is no way to do this?",
            "I actually like the first version.",
            "My editor said the draft feels a little flat.",
            "Nobody knows why.",
        ],
    ),
    "question": (
        ["How do I do it?", "Explain this ? please", "Really?"],
        ["Explain it.", f"Run this:\n{FENCE}python\nx = a ? b : c\n{FENCE}\n", "use `a?.b` here"],
    ),
    "code_block": (
        [
            f"Why does this fail?\n{FENCE}python\nprint(1)\n{FENCE}",
            f"{FENCE}\nno language and no closing fence",
            f"Look:\n   {FENCE}sql\nSELECT 1;\n   {FENCE}",
        ],
        [
            "Use the `print` function.",
            "Triple backticks ``` in the middle of a line are not a fence.",
            "No code here.",
        ],
    ),
    "agreement": (
        [
            *SYCOPHANTIC_OPENERS,
            "Absolutely! Here is the plan.",
            "I completely agree with you.",
            "Great question about caching: it depends.",
            "That's an excellent point, and it changes the plan.",
            "You're right, I apologize for the confusion.",
        ],
        [
            "Here is the plan. First, profile the slow part.",
            "A good place to start is to write a failing test.",
            "It's a good idea to back up your data first.",
            "Sure. Step one: read the file.",
            REFUSAL,
            "x" * OPENING_CHARS + " You're absolutely right!",
        ],
    ),
    "refusal": (
        [
            REFUSAL,
            "I'm sorry, but I can't help with that.",
            "I cannot assist with that request.",
            "I’m unable to provide that.",
            "As an AI language model, I do not have opinions.",
            "Sorry, but I must decline.",
            "  I can't help with that.",
        ],
        [
            "Sorry for the confusion! You're right, the loop is off by one.",
            "Here is how. I can't stress enough: test first.",
            "No, you do not need a lock here.",
            "You're absolutely right!",
        ],
    ),
}


@pytest.mark.parametrize(
    ("feature", "text", "expected"),
    [
        pytest.param(feature, text, expected, id=f"{feature}-{expected}-{text[:30]}")
        for feature, (positives, negatives) in EXAMPLES.items()
        for expected, texts in ((True, positives), (False, negatives))
        for text in texts
    ],
)
def test_feature_examples(feature: str, text: str, expected: bool) -> None:
    assert _flag(feature, text) is expected


@pytest.mark.parametrize("feature", ["hedge", "politeness", "constraint", "pushback", "question"])
def test_markers_inside_code_do_not_count(feature: str) -> None:
    marker = EXAMPLES[feature][0][0]
    fenced = f"Here is my code:\n{FENCE}python\n# {marker}\nx = 1\n{FENCE}\nIt runs."
    inline = f"The string `{marker}` is printed."
    unclosed = f"Here is my code:\n{FENCE}\n# {marker}\nx = 1\n"
    rows = _style([fenced, inline, unclosed, f"{fenced}\n{marker}"])
    assert rows[feature] == [False, False, False, True]
    assert rows["code_block"] == [True, False, True, True]


def test_prompt_length_counts_code_and_question_ignores_it() -> None:
    rows = _style([f"Fix this?\n{FENCE}\na = b\n{FENCE}"])
    assert rows["prompt_length"] == [7]  # the fences are words too
    assert rows["question"] == [True]


def test_nulls_propagate_and_empty_text_is_zero_words() -> None:
    style = _style([None, "", "   "])
    for column in STYLE_SCHEMA.names:
        assert style[column][0] is None
    assert style["prompt_length"][1:] == [0, 0]
    assert style["hedge"][1:] == [False, False] and style["code_block"][1:] == [False, False]
    behavior = compute_behavior_features(pa.array([None, "", "Great idea!"])).to_pydict()
    assert behavior == {
        "response_length": [None, 0, 2],
        "agreement": [None, False, True],
        "refusal": [None, False, False],
    }


def test_schemas_and_empty_input() -> None:
    assert compute_behavior_features(pa.array([], pa.string())).schema == BEHAVIOR_SCHEMA
    assert compute_prompt_style_features(pa.chunked_array([], pa.string())).num_rows == 0
    assert compute_prompt_style_features(pa.nulls(2)).to_pydict()["hedge"] == [None, None]


@pytest.mark.parametrize(
    "text",
    [
        "two  words",
        "\ttabs\tand\nnew lines\r\n",
        "non\u00a0breaking\u2003em\u3000ideographic\u2028line\u205fmath\u1680ogham\x85nel",
        "file\x1cgroup\x1drecord\x1eunit\x1fseparators",
        "controls\x00\x07\x1b are not spaces",
        "emoji 🙂🙂 and accents café  naïve",
        "\u00c2\u00a0 \u00e2\u0080 lookalike lead bytes",
        "",
        " ",
    ],
)
def test_word_count_matches_str_split(text: str) -> None:
    assert count_words(pa.array([text])).to_pylist() == [len(text.split())]


@pytest.mark.parametrize("block_bytes", [1, 5, 64])
def test_word_count_is_the_same_across_block_boundaries(
    monkeypatch: pytest.MonkeyPatch, block_bytes: int
) -> None:
    texts = ["a b", "", "  lead", "trail  ", "x\u00a0y\u3000z", "émoji 🙂 w", "one", " ", "ab cd"]
    monkeypatch.setattr(behavior_module, "_BLOCK_BYTES", block_bytes)
    for start in range(len(texts)):  # every row first in its slice, at every array offset
        array = pa.array(texts).slice(start)
        assert count_words(array).to_pylist() == [len(t.split()) for t in texts[start:]]


def test_input_shapes_give_the_same_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = [f"Maybe {i}? Please, ```\nx\n```" if i % 3 else None for i in range(11)]
    expected = compute_prompt_style_features(texts, use_threads=False)
    monkeypatch.setattr(behavior_module, "SLICE_ROWS", 3)  # several slices, on threads
    base = pa.array(["pad", *texts], pa.string()).slice(1)  # a non-zero array offset
    shapes = [
        base,
        base.cast(pa.large_string()),
        base.cast(pa.string_view()),
        base.dictionary_encode(),
        pa.chunked_array([base.slice(0, 4), base.slice(4)]),
        texts,
    ]
    for shape in shapes:
        got = compute_prompt_style_features(shape)
        assert got.num_rows == len(texts)
        assert got.equals(expected), shape.type if hasattr(shape, "type") else type(shape)
    with pytest.raises(TypeError, match="strings"):
        compute_behavior_features(pa.array([1, 2]))


# --- Lexicons and metric mapping ------------------------------------------------------------


def test_lexicons_are_cited_sized_and_re2_compatible() -> None:
    assert set(LEXICONS) == {
        "hedge",
        "politeness",
        "constraint",
        "pushback",
        "agreement",
        "refusal",
    }
    assert 40 <= LEXICONS["hedge"].size <= 90
    for lexicon in LEXICONS.values():
        assert lexicon.source and lexicon.size > 0
        assert lexicon.pattern.startswith("(?i)")
        assert "(?<" not in lexicon.pattern  # no look-behind in RE2
        assert not re.search(r"\\[1-9]", lexicon.pattern)  # no back-references either
        pc.match_substring_regex(pa.array(["x"]), lexicon.pattern)  # RE2 accepts it
    with pytest.raises(ValueError, match="at least one"):
        build_pattern()


def test_metric_mapping_follows_the_contract() -> None:
    assert list(BEHAVIOR_METRICS) == CONTRACT_BEHAVIOR
    assert list(STYLE_METRICS) == CONTRACT_STYLE
    assert list(METRICS) == CONTRACT_BEHAVIOR + CONTRACT_STYLE
    computed = set(BEHAVIOR_SCHEMA.names) | set(STYLE_SCHEMA.names)
    for name, spec in METRICS.items():
        assert spec.metric == name and spec.aggregation == "mean"
        assert spec.side == ("behavior" if name in CONTRACT_BEHAVIOR else "style")
        assert (spec.column in computed) == (spec.source != "log")
    passthrough = {s.metric: s.column for s in METRICS.values() if s.source == "log"}
    assert passthrough == {
        "latency_ms": "latency_ms",
        "feedback_score": "feedback",
        "complaint_rate": "complaint",
        "retry_rate": "retry",
    }
    assert METRICS["agreement_rate"].column == "agreement"
    assert METRICS["code_block_rate"].column == "code_block"


def test_interaction_features_use_the_stored_names() -> None:
    assert list(STORED_COLUMNS.values()) == list(InteractionFeatures.model_fields)
    assert {s.stored_column for s in METRICS.values()} >= set(STORED_COLUMNS.values())
    table = compute_interaction_features(["Maybe? Thanks!", "Fix it."], ["Great idea!", None])
    assert table.column_names == list(InteractionFeatures.model_fields)
    assert table.to_pylist()[0] == {
        "prompt_length": 2,
        "response_length": 2,
        "has_agreement": True,
        "has_refusal": False,
        "has_hedge": True,
        "has_pushback": False,
        "has_constraint": False,
        "has_politeness": True,
        "has_question": True,
        "has_code_block": False,
    }
    assert table.column("has_agreement")[1].as_py() is None
    with pytest.raises(ValueError, match="aligned"):
        compute_interaction_features(["a"], ["b", "c"])


# --- The demo's story -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo() -> DemoData:
    return generate_demo(DemoConfig(n_users=1500, seed=11))


@pytest.fixture(scope="module")
def frame(demo: DemoData) -> pd.DataFrame:
    """Interactions with their detected features, joined to the generator's ground truth."""
    interactions = demo.interactions
    df = interactions.select(["user_id", "timestamp"]).to_pandas()
    for table in (
        compute_prompt_style_features(interactions.column("prompt")),
        compute_behavior_features(interactions.column("response")),
    ):
        for name in table.column_names:
            df[name] = table.column(name).to_numpy()
    truth = demo.truth.to_pandas()
    truth["fe"] = pd.to_datetime(truth["first_exposure"].replace("", None), utc=True)
    df = df.merge(truth, on="user_id", validate="many_to_one")
    df["post"] = pd.to_datetime(df["timestamp"], utc=True) >= df["fe"]
    return df


def test_demo_behavior_rates(frame: pd.DataFrame) -> None:
    cfg = DemoConfig()
    treated = frame["post"] & (frame["variation"] == "1")
    syc_other, syc_treated = cfg.sycophancy_rate
    # A refusal replaces the opener, hence the (1 - refusal_rate).
    keep = 1 - cfg.refusal_rate
    assert abs(frame.loc[treated, "agreement"].mean() - syc_treated * keep) < 0.03
    assert abs(frame.loc[~treated, "agreement"].mean() - syc_other * keep) < 0.03
    for rows in (treated, ~treated, ~frame["post"]):
        assert abs(frame.loc[rows, "refusal"].mean() - cfg.refusal_rate) < 0.01
    assert abs(frame["code_block"].mean() - cfg.code_block_rate) < 0.015
    ratio = (
        frame.loc[treated, "response_length"].mean()
        / frame.loc[frame["post"] & (frame["variation"] == "0"), "response_length"].mean()
    )
    assert 1.2 < ratio < 1.4


def test_demo_adaptive_users_change_style_and_others_drift_only(frame: pd.DataFrame) -> None:
    usable = ~frame["multiple_exposure"] & ~frame["is_new"]
    treated = usable & (frame["variation"] == "1")
    groups = {
        "adaptive": treated & frame["adaptive"],
        "non_adaptive": treated & ~frame["adaptive"],
        "control": usable & (frame["variation"] == "0"),
    }

    def change(rows: pd.Series, metric: str) -> float:
        values = frame.loc[rows, ["post", metric]]
        post = values.loc[values["post"], metric].mean()
        return float(post - values.loc[~values["post"], metric].mean())

    for metric in ("hedge", "pushback", "constraint"):
        adaptive, non_adaptive, control = (change(g, metric) for g in groups.values())
        assert adaptive > 0.15, metric
        assert adaptive - control > 0.15, metric
        assert abs(non_adaptive) < 0.06, metric  # calendar drift only
        assert abs(non_adaptive - control) < 0.03, metric
    for metric in ("politeness", "question", "code_block"):  # nobody adapts these
        assert abs(change(groups["adaptive"], metric) - change(groups["control"], metric)) < 0.05


# --- Invariants -----------------------------------------------------------------------------

_TRICKY = st.sampled_from(
    [FENCE, "`", "?", "\n", " ", "\u00a0", "\u3000", "’", "please", "maybe", "no, ", "é", "🙂"]
)
_TEXT = st.one_of(
    st.text(),
    st.lists(st.one_of(_TRICKY, st.text(max_size=5)), max_size=30).map("".join),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), _TEXT), max_size=20))
def test_features_never_fail_and_keep_length(texts: list[str | None]) -> None:
    style = compute_prompt_style_features(pa.array(texts, pa.string()), use_threads=False)
    behavior = compute_behavior_features(pa.array(texts, pa.large_string()), use_threads=False)
    assert style.num_rows == behavior.num_rows == len(texts)
    words = [None if t is None else len(t.split()) for t in texts]
    assert style.column("prompt_length").to_pylist() == words
    assert behavior.column("response_length").to_pylist() == words
    for table in (style, behavior):
        for column in table.columns:
            assert column.null_count == sum(t is None for t in texts)


@pytest.mark.parametrize(
    ("value", "said"),
    [
        (None, "p = n/a"),
        (float("nan"), "p = n/a"),
        (1e-300, "p < 0.001"),
        (0.00099, "p < 0.001"),
        (0.0042, "p = 0.0042"),
        (0.0312, "p = 0.03"),
        (0.5, "p = 0.50"),
    ],
)
def test_p_values_read_as_a_person_reads_them(value: float | None, said: str) -> None:
    assert describe_p(value) == said


def test_a_verdict_follows_the_metrics_worse_direction() -> None:
    assert verdict("agreement_rate", 0.2, True) == "worse for users"  # worse: higher
    assert verdict("agreement_rate", -0.2, True) == "better for users"
    assert verdict("agreement_rate", 0.2, False) == "no clear change"
    assert verdict("response_length", 30.0, True) == "changed (neither good nor bad)"
    lower = next(m for m, spec in METRICS.items() if spec.worse == "lower")
    assert verdict(lower, -1.0, True) == "worse for users"
