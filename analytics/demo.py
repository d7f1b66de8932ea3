"""Seeded demo data: a chat-model upgrade whose users quietly adapt to a sycophantic model.

GrowthBook experiment ``chat-model-upgrade`` (feature ``chat-model``) serves the old model
``chat-base-1`` to variation "0" and ``chat-plus-2`` to variation "1"; further variations run
``chat-alt-N`` models that behave like control. ``chat-plus-2`` opens replies with flattery and
answers ~30% longer. A share of its users (more often heavy users) adapt: their prompts grow
longer and hedge, push back and constrain more, following ``A * (1 - exp(-t / tau))`` in days
since first exposure. Everybody's prompts also drift slowly with calendar time, so only the
comparison with control isolates the adaptation. The per-user ground truth is returned with
the data so the analysis can be checked against it.

All randomness is drawn vectorised from one ``numpy`` generator, and text is assembled by
indexing precomputed sentence pools inside Arrow, so a million interactions take seconds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip as gzip_lib
import io
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

DAY_MS = 86_400_000
CONTROL_MODEL = "chat-base-1"
TREATMENT_MODEL = "chat-plus-2"
REFUSAL = "I'm sorry, but I can't help with that."
SYCOPHANTIC_OPENERS = (
    "You're absolutely right!",
    "Great idea!",
    "What a great question!",
    "Excellent point!",
    "Great question!",
    "You're absolutely right, and that's a sharp observation!",
)
COUNTRIES = ("US", "IN", "GB", "DE", "BR", "FR", "CA", "JP")
COUNTRY_WEIGHTS = (0.35, 0.15, 0.10, 0.10, 0.10, 0.08, 0.07, 0.05)
PLANS = ("free", "plus", "pro")
PLAN_WEIGHTS = (0.6, 0.3, 0.1)
TOPIC_WEIGHTS = (0.30, 0.15, 0.12, 0.13, 0.12, 0.18)  # coding first: it owns the code blocks
CHUNK_ROWS = 131_072  # bounds the transient memory of text assembly
_SECOND_CONSTRAINT = 0.3  # P(two constraint sentences | any)
_FAVOURITE_TOPIC = 0.7  # share of a user's prompts about their own favourite topic
_MAX_CONTEXT = 6

# Sentence material, one "kind: text" per line; "## all" holds templates and shared lines.
# Each component's marker words (hedges, pushback, "only/must/do not/exactly", politeness,
# "?") appear in that component only, so each style rate in the data is what was drawn.
_TEXT = """
## all
polite_start: Could you please help me with this?
polite_start: Would you mind helping me out?
polite_start: Hi! Could you please take a look at this?
polite_end: Thanks in advance!
polite_end: Thank you so much!
polite_end: Please and thank you!
polite_end: Thanks, I appreciate it.
pushback: That's not right.
pushback: No, that's wrong.
pushback: Actually, I disagree with your last answer.
pushback: Your previous answer was incorrect.
pushback: That is not what I asked for.
pushback: I doubt that's correct, it contradicts what you said before.
hedge: I think the problem is in how I set this up.
hedge: Maybe I am overcomplicating this.
hedge: Perhaps there is a simpler way to go about it.
hedge: I'm not sure, but it seems like the usual advice is a poor fit for my case.
hedge: It seems like I am missing a step somewhere.
hedge: Possibly the earlier steps were fine and the issue is later.
hedge: I think I understand the basics, but maybe not the details.
constraint: Answer in exactly 3 bullet points.
constraint: Do not include examples.
constraint: You must keep it under 100 words.
constraint: Use exactly two short paragraphs.
constraint: Do not use jargon or abbreviations.
constraint: Only give me the final answer.
context: I have been stuck on this for most of the afternoon.
context: This is for something I need to finish by Friday.
context: I tried a couple of approaches already and neither worked well.
context: A friend suggested I ask here first.
context: I am fairly new to this, so some background would help.
context: Last time I attempted this it took far too long.
question: How do I {}?
question: What is the best way to {}?
question: How would you {}?
question: What steps should I follow to {}?
request: Explain how to {}.
request: Give me a step-by-step plan to {}.
request: Walk me through how to {}.
request: Show me how to {}.
step: A good place to start is to {}.
step: It also helps to {} as early as you can.
step: Next, {} and check how it goes.
step: Many people find it useful to {} before anything else.
fact: Keep in mind that {}.
fact: In practice, {}, so plan around it.
fact: One reason this matters is that {}.
fact: It is worth remembering that {}.
closing: If any step is unclear, I can go into more detail.
closing: Small, steady changes tend to be easier to keep up than big ones.
closing: Try the simplest version first and build from there.
closing: Write down what you tried so the next attempt is faster.
closing: There is no single right answer here, and that is normal.
closing: Once the basics work, you can refine the details.
closing: Checking your progress after a few days will show what to adjust.
## coding
task: parse a large CSV file without running out of memory
task: write unit tests for a function that calls an external API
task: speed up a slow SQL query with several joins
task: structure a small Flask project with a few blueprints
task: track down a race condition in some threaded code
task: reverse a linked list in place
context: The code runs on Python 3.11 on a small Linux server.
context: Our test suite takes about ten minutes to run on every commit.
context: The input file has roughly two million rows and keeps growing.
context: My team reviews every pull request before it gets merged.
context: This is part of a side project I maintain on weekends.
step: profile the slow part before changing anything
step: write a small failing test that reproduces the problem
step: read the input in chunks instead of all at once
step: add logging around the code path you suspect
step: keep each function focused on one job
fact: premature optimisation tends to make code harder to change
fact: most performance problems come from a handful of hot loops
fact: clear names save more time than clever tricks
fact: flaky tests usually point to shared state between cases
fact: the standard library already covers many common needs
constraint: Only use Python.
constraint: Use only the standard library.
## writing
task: tighten the opening paragraph of my essay
task: write a cover letter for a junior designer role
task: make my blog post sound less stiff and formal
task: outline a short story about a lighthouse keeper
task: give a colleague tactful feedback on a report
task: summarise a long meeting in a few clear lines
context: The essay is due next Monday and runs about two thousand words.
context: English is my second language, so phrasing is the hard part.
context: The audience is a general reader with no background in the field.
context: My editor said the draft feels a little flat.
context: I write for a small newsletter with a few hundred subscribers.
step: read the draft aloud and mark where you stumble
step: cut any sentence that repeats the one before it
step: open with a concrete detail instead of a general claim
step: move the strongest point to the first paragraph
step: end each section with a line that leads into the next
fact: readers decide within a few lines whether to keep going
fact: short sentences carry emphasis better than long ones
fact: specific examples are more persuasive than adjectives
fact: most first drafts are about a third too long
fact: a clear structure lets readers skim without getting lost
constraint: Only suggest changes to the first paragraph.
constraint: Do not rewrite the whole text.
## travel
task: spend four days in Lisbon on a modest budget
task: pack for a two-week trip with just a carry-on bag
task: get from the airport to the city centre in Tokyo
task: choose between a rail pass and single tickets in Italy
task: avoid jet lag on a long flight to Singapore
task: find quiet hiking trails near Vancouver in autumn
context: We are two adults travelling with a seven-year-old.
context: I have a few days off at the end of the month.
context: Last year we went to Spain and loved the food markets.
context: We prefer trains and walking over renting a car.
context: Our budget is around eighty euros a day per person.
step: book the longest train legs a few weeks ahead
step: keep the first day light so you can adjust to the time zone
step: group sights by neighbourhood to cut down on transit
step: carry a small day bag with water and a charger
step: check the opening days of museums before you go
fact: many museums close one day a week
fact: public transport passes often pay for themselves within two days
fact: shoulder season brings lower prices and smaller crowds
fact: airport trains are usually faster than taxis at rush hour
fact: local markets are a cheap and lively place to eat
constraint: Only suggest places reachable by train.
constraint: You must stay within my budget.
## cooking
task: make a weeknight curry from what is in my pantry
task: bake sourdough bread with a young starter
task: cook rice so it comes out fluffy every time
task: prepare a vegetarian dinner for eight guests
task: keep chicken breast juicy in the oven
task: plan a week of lunches on a tight budget
context: My kitchen has a small oven and two burners.
context: One of the guests is allergic to nuts.
context: I usually have about forty minutes to cook after work.
context: My starter is about a week old and bubbles a little.
context: We are trying to eat less meat this year.
step: measure ingredients by weight rather than by volume
step: let the pan heat fully before adding anything
step: season in small amounts and taste as you go
step: prepare every ingredient before you turn on the stove
step: rest the meat for a few minutes before slicing
fact: salt draws out moisture and deepens flavour
fact: a young starter needs longer to rise
fact: rinsing rice removes the starch that makes it sticky
fact: most ovens run hotter or cooler than the dial says
fact: acid such as lemon juice brightens a heavy dish
constraint: Only use ingredients from a regular supermarket.
constraint: Do not suggest anything with nuts.
## finance
task: build an emergency fund on an irregular income
task: compare an index fund with a high-interest savings account
task: split shared expenses fairly with my roommates
task: pay down two credit cards faster
task: set up a simple monthly budget
task: understand the fees on my retirement account
context: I work freelance, so my income changes from month to month.
context: We are three people sharing a flat with one lease.
context: I have about four thousand in savings right now.
context: My employer matches retirement contributions up to five percent.
context: I started tracking my spending in a spreadsheet last month.
step: list every fixed cost before planning anything else
step: pay the card with the highest interest rate first
step: automate a small transfer to savings on payday
step: review your statements once a month
step: keep three to six months of expenses in cash
fact: fees compound just like returns do
fact: an emergency fund keeps small shocks from turning into debt
fact: broad index funds spread risk across many companies
fact: interest on credit cards is usually far higher than savings rates
fact: a budget works best when it is simple enough to keep
constraint: Do not recommend specific stocks.
constraint: You must assume an income of 3000 a month.
## study
task: prepare for a statistics exam in three weeks
task: remember vocabulary for my Spanish class
task: take better notes during lectures
task: get an intuitive feel for eigenvalues
task: stay focused while studying at home
task: write a literature review for my thesis
context: The exam covers eight chapters and a lot of formulas.
context: I have classes in the morning and a part-time job in the evening.
context: My professor grades mostly on the final project.
context: I study best in short sessions with breaks.
context: The thesis is in environmental science.
step: test yourself instead of rereading your notes
step: space your reviews over several days
step: explain each idea in your own words
step: work through past exam papers under time pressure
step: summarise each lecture on a single page
fact: active recall beats passive rereading
fact: sleep helps the brain consolidate what you learned
fact: short, regular sessions work better than cramming
fact: examples make abstract ideas easier to remember
fact: teaching a topic is one of the fastest ways to learn it
constraint: Only cover what fits into a one-hour session.
constraint: Do not skip the intuition behind each step.
"""
CODE_BLOCKS = (
    '```python\nimport csv\n\nwith open("data.csv") as f:\n    rows = list(csv.reader(f))\n'
    "print(len(rows))\n```",
    "```python\ndef reverse(head):\n    prev = None\n    while head:\n"
    "        head.next, prev, head = prev, head, head.next\n    return prev\n```",
    "```python\nimport threading\n\ncounter = 0\n\ndef work():\n    global counter\n"
    "    for _ in range(10000):\n        counter += 1\n```",
    "```sql\nSELECT o.id, c.name, SUM(i.price)\nFROM orders o\n"
    "JOIN customers c ON c.id = o.customer_id\nJOIN items i ON i.order_id = o.id\n"
    "GROUP BY o.id, c.name;\n```",
    '```python\ndef fetch_user(client, user_id):\n    response = client.get(f"/users/{user_id}")\n'
    "    response.raise_for_status()\n    return response.json()\n```",
    "```javascript\nconst total = items.reduce((sum, item) => sum + item.price, 0);\n"
    "console.log(total);\n```",
)


@dataclass(frozen=True)
class DemoConfig:
    """Knobs of the demo story. ``start`` is the first instant of the pre-period; the
    experiment begins ``pre_days`` later. Pairs are (baseline, fully adapted or treated)."""

    n_users: int = 3000
    seed: int = 7
    variations: int = 2
    start: datetime = datetime(2026, 10, 5, tzinfo=UTC)
    pre_days: int = 14
    experiment_days: int = 28
    new_user_share: float = 0.15
    experiment_id: str = "chat-model-upgrade"
    feature_key: str = "chat-model"
    mean_rate: float = 0.5  # interactions per user-day, lognormal across users
    rate_sigma: float = 1.0
    turns_per_session: float = 1.6
    extra_exposures: tuple[int, int] = (1, 3)  # repeat exposure rows per user, at most
    multiple_exposure_share: float = 0.005
    adaptive_logit: tuple[float, float] = (-0.4, 1.0)  # on log(rate / median rate)
    amplitude_range: tuple[float, float] = (0.6, 1.0)
    tau_days: float = 4.0
    prompt_words: float = 30.0
    adapted_extra_words: float = 12.0  # prompt growth at full adaptation
    politeness_rate: float = 0.30
    question_rate: float = 0.55
    code_block_rate: float = 0.08
    hedge_rate: tuple[float, float] = (0.15, 0.55)
    pushback_rate: tuple[float, float] = (0.08, 0.45)
    constraint_rate: tuple[float, float] = (0.15, 0.60)
    drift_words_per_day: float = 0.08
    drift_hedge_per_day: float = 0.002
    drift_question_per_day: float = 0.002
    response_words: float = 120.0
    treatment_length_factor: float = 1.3
    sycophancy_rate: tuple[float, float] = (0.08, 0.60)  # (other models, chat-plus-2)
    refusal_rate: float = 0.02
    thumbs_up_rate: float = 0.20
    thumbs_down_rate: float = 0.07
    feedback_lift: float = 0.04
    complaint_rate: float = 0.03
    retry_rate: float = 0.06
    latency_median_ms: float = 900.0
    latency_sigma: float = 0.45

    def __post_init__(self) -> None:
        if self.n_users < 1 or self.variations < 2:
            raise ValueError("need n_users >= 1 and variations >= 2")
        if self.pre_days < 0 or self.experiment_days < 1 or self.tau_days <= 0:
            raise ValueError("need pre_days >= 0, experiment_days >= 1 and tau_days > 0")
        feedback = self.thumbs_up_rate + self.thumbs_down_rate + self.feedback_lift
        shares = (self.new_user_share, self.multiple_exposure_share, self.refusal_rate, feedback)
        if not all(0.0 <= s <= 1.0 for s in shares):
            raise ValueError("shares and rates must lie in [0, 1]")
        # A naive start means UTC, as in the data contract.
        start = self.start if self.start.tzinfo else self.start.replace(tzinfo=UTC)
        object.__setattr__(self, "start", start.astimezone(UTC))

    @property
    def experiment_start(self) -> datetime:
        return self.start + timedelta(days=self.pre_days)

    @property
    def end(self) -> datetime:
        return self.experiment_start + timedelta(days=self.experiment_days)

    def model_for(self, variation: int) -> str:
        """Model served to ``variation`` after exposure."""
        return {0: CONTROL_MODEL, 1: TREATMENT_MODEL}.get(variation, f"chat-alt-{variation}")


@dataclass(frozen=True)
class DemoData:
    """The generated tables; ``config`` (when set) goes into the manifest."""

    exposures: pa.Table
    interactions: pa.Table
    truth: pa.Table
    config: DemoConfig | None = None


@dataclass(frozen=True)
class _Pool:
    """All sentences of one text column in one Arrow array, addressed by kind and topic."""

    strings: pa.Array
    base: dict[str, int]
    size: dict[str, int]  # entries per topic (topical kinds) or in total (shared kinds)
    topical: dict[str, bool]
    words: dict[str, float]  # mean words, weighted by topic frequency

    def offsets(self, kind: str, topic: IntArray) -> IntArray:
        return self.base[kind] + topic * (self.size[kind] if self.topical[kind] else 0)

    def draw(self, rng: np.random.Generator, kind: str, topic: IntArray) -> IntArray:
        return self.offsets(kind, topic) + rng.integers(0, self.size[kind], len(topic))

    def distinct(
        self, rng: np.random.Generator, kind: str, topic: IntArray, k: int, templates: int = 1
    ) -> IntArray:
        """``k`` sentences per row that never repeat an item: a random start plus a stride
        coprime to the item count (prime, or k <= 2). Template-major kinds rotate templates."""
        items = self.size[kind] // templates
        n, step = len(topic), np.arange(k)
        item = (rng.integers(0, items, (n, 1)) + step * rng.integers(1, items, (n, 1))) % items
        template = (rng.integers(0, templates, (n, 1)) + step) % templates
        rows: IntArray = self.offsets(kind, topic)[:, None] + template * items + item
        return rows


def _build_pool(kinds: dict[str, list[list[str]]]) -> _Pool:
    """``kinds`` maps a kind to one list of sentences per topic, or to a single shared list."""
    strings: list[str] = []
    base, size, topical, words = {}, {}, {}, {}
    for kind, groups in kinds.items():
        base[kind], size[kind], topical[kind] = len(strings), len(groups[0]), len(groups) > 1
        weights = TOPIC_WEIGHTS if topical[kind] else (1.0,)
        words[kind] = sum(
            w * float(np.mean([len(s.split()) for s in g]))
            for w, g in zip(weights, groups, strict=True)
        )
        if any(len(g) != size[kind] for g in groups):
            raise ValueError(f"pool {kind!r} needs the same number of sentences per topic")
        strings.extend(s for g in groups for s in g)
    return _Pool(pa.array(strings, pa.string()), base, size, topical, words)


@lru_cache(maxsize=1)
def _pools() -> tuple[_Pool, _Pool]:
    text: dict[str, dict[str, list[str]]] = {}
    for line in _TEXT.strip().splitlines():
        if line.startswith("## "):
            section = text.setdefault(line[3:], {})
        else:
            kind, sentence = line.split(": ", 1)
            section.setdefault(kind, []).append(sentence)
    shared, topics = text.pop("all"), list(text.values())

    def fill(template_kind: str, kind: str) -> list[list[str]]:
        return [[p.format(x) for p in shared[template_kind] for x in t[kind]] for t in topics]

    prompts = _build_pool(
        {
            **{k: [shared[k]] for k in ("polite_start", "polite_end", "pushback", "hedge")},
            "context": [t["context"] + shared["context"] for t in topics],  # 11: prime
            "question": fill("question", "task"),
            "request": fill("request", "task"),
            "constraint": [shared["constraint"] + t["constraint"] for t in topics],
            "code": [list(CODE_BLOCKS)],
        }
    )
    replies = _build_pool(
        {
            "opener": [list(SYCOPHANTIC_OPENERS)],
            "refusal": [[REFUSAL]],
            "step": fill("step", "step"),  # template-major: 4 templates x 5 (prime) items
            "fact": fill("fact", "fact"),
            "closing": [shared["closing"]],  # 7: prime
        }
    )
    return prompts, replies


def _fixed_width(chars: npt.NDArray[np.uint8]) -> pa.Array:
    """ASCII byte matrix (rows x width) -> Arrow strings, without a Python object per row."""
    n, width = chars.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    data = np.ascontiguousarray(chars).tobytes()
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets.tobytes()), pa.py_buffer(data))


def _hex_ids(rng: np.random.Generator, n: int, n_bytes: int, *, uuid: bool) -> pa.Array:
    raw = rng.integers(0, 256, (n, n_bytes), dtype=np.uint8)
    if uuid:  # RFC 4122 version 4 / variant 1 bits, so ids look like uuid4()
        raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
        raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    hexed = np.empty((n, 2 * n_bytes), dtype=np.uint8)
    hexed[:, 0::2], hexed[:, 1::2] = digits[raw >> 4], digits[raw & 0x0F]
    if not uuid:
        return _fixed_width(hexed)
    out = np.full((n, 36), ord("-"), dtype=np.uint8)
    out[:, np.r_[0:8, 9:13, 14:18, 19:23, 24:36]] = hexed
    return _fixed_width(out)


def _user_ids(n: int) -> pa.Array:
    width = max(6, len(str(n)))
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    digits = (np.arange(n, dtype=np.int64)[:, None] // powers) % 10 + ord("0")
    return _fixed_width(np.column_stack([np.full(n, ord("u")), digits]).astype(np.uint8))


def _iso(ms: IntArray) -> pa.Array:
    stamps = pa.array(ms, pa.timestamp("ms", tz="UTC"))
    return pc.strftime(stamps, format="%Y-%m-%dT%H:%M:%SZ")  # %S carries the milliseconds


def _join_rows(pool: pa.Array, slots: IntArray) -> pa.Array:
    """Join the pool sentences named in each row of ``slots`` (-1 = absent) with spaces."""
    present = slots >= 0
    offsets = np.zeros(len(slots) + 1, dtype=np.int32)
    np.cumsum(present.sum(axis=1), out=offsets[1:])
    pieces = pool.take(pa.array(slots[present]))
    return pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), pieces), " ")


def _prompts(
    rng: np.random.Generator,
    cfg: DemoConfig,
    topic: IntArray,
    days: FloatArray,
    strength: FloatArray,
) -> pa.Array:
    pool = _pools()[0]
    n, w = len(topic), pool.words
    (h0, h1), (p0, p1), (c0, c1) = cfg.hedge_rate, cfg.pushback_rate, cfg.constraint_rate
    question = np.clip(cfg.question_rate + cfg.drift_question_per_day * days, 0, 1)
    hedge = np.clip(h0 + cfg.drift_hedge_per_day * days + (h1 - h0) * strength, 0, 1)
    pushback, constraint = p0 + (p1 - p0) * strength, c0 + (c1 - c0) * strength
    # Context sentences make up whatever length the other parts leave to reach the targets,
    # so prompt length follows the config however the pools are worded.
    con_words = (1 + _SECOND_CONSTRAINT) * w["constraint"]
    core = cfg.question_rate * w["question"] + (1 - cfg.question_rate) * w["request"]
    polite = cfg.politeness_rate * (w["polite_start"] + w["polite_end"]) / 2
    base = polite + core + h0 * w["hedge"] + p0 * w["pushback"] + c0 * con_words
    base += cfg.code_block_rate * w["code"]
    adapted = (h1 - h0) * w["hedge"] + (p1 - p0) * w["pushback"] + (c1 - c0) * con_words
    drift = cfg.drift_words_per_day - cfg.drift_hedge_per_day * w["hedge"]
    drift -= cfg.drift_question_per_day * (w["question"] - w["request"])
    context_words = cfg.prompt_words - base + drift * days
    context_words += (cfg.adapted_extra_words - adapted) * strength
    n_context = rng.poisson(np.maximum(0.0, context_words) / w["context"])

    u = rng.random((n, 7))
    is_polite, at_start = u[:, 0] < cfg.politeness_rate, u[:, 1] < 0.5
    n_con = (u[:, 2] < constraint) * (1 + (u[:, 3] < _SECOND_CONSTRAINT))
    contexts = pool.distinct(rng, "context", topic, _MAX_CONTEXT)
    constraints = pool.distinct(rng, "constraint", topic, 2)
    slots = np.column_stack(
        [
            np.where(u[:, 4] < pushback, pool.draw(rng, "pushback", topic), -1),
            np.where(is_polite & at_start, pool.draw(rng, "polite_start", topic), -1),
            np.where(np.arange(_MAX_CONTEXT) < n_context[:, None], contexts, -1),
            np.where(u[:, 5] < hedge, pool.draw(rng, "hedge", topic), -1),
            np.where(
                u[:, 6] < question,
                pool.draw(rng, "question", topic),
                pool.draw(rng, "request", topic),
            ),
            np.where(np.arange(2) < n_con[:, None], constraints, -1),
            np.where(is_polite & ~at_start, pool.draw(rng, "polite_end", topic), -1),
        ]
    )
    text = _join_rows(pool.strings, slots)
    # Code blocks belong to coding prompts; their rate there keeps the overall rate on target.
    is_code = (topic == 0) & (rng.random(n) < cfg.code_block_rate / TOPIC_WEIGHTS[0])
    code = pool.strings.take(pa.array(pool.draw(rng, "code", topic), mask=~is_code))
    return pc.binary_join_element_wise(text, code, "\n", null_handling="skip")


def _responses(
    rng: np.random.Generator, cfg: DemoConfig, topic: IntArray, treated: BoolArray
) -> pa.Array:
    """[opener] + advice steps + facts + closing remarks, never repeating an item in a row."""
    pool = _pools()[1]
    n, w = len(topic), pool.words
    steps, facts = pool.size["step"] // 4, pool.size["fact"] // 4
    syc_rate = np.where(treated, cfg.sycophancy_rate[1], cfg.sycophancy_rate[0])
    sycophantic, refusal = rng.random(n) < syc_rate, rng.random(n) < cfg.refusal_rate
    target = cfg.response_words * np.where(treated, cfg.treatment_length_factor, 1.0)
    per_sentence = (w["step"] + w["fact"] + w["closing"]) / 3
    mean_sentences = np.maximum(1.0, (target - syc_rate * w["opener"]) / per_sentence)
    total = np.where(refusal, 0, 1 + rng.poisson(mean_sentences - 1))
    n_step = np.minimum(steps, (total + 2) // 3)
    n_fact = np.minimum(facts, (total - n_step + 1) // 2)
    n_close = np.minimum(pool.size["closing"], total - n_step - n_fact)
    opener = np.where(sycophantic, pool.draw(rng, "opener", topic), -1)
    sections = [
        (pool.distinct(rng, kind, topic, k, templates), count)
        for kind, k, templates, count in (
            ("step", steps, 4, n_step),
            ("fact", facts, 4, n_fact),
            ("closing", pool.size["closing"], 1, n_close),
        )
    ]
    slots = np.column_stack(
        [np.where(refusal, pool.base["refusal"], opener)]
        + [np.where(np.arange(idx.shape[1]) < count[:, None], idx, -1) for idx, count in sections]
    )
    return _join_rows(pool.strings, slots)


def generate_demo(config: DemoConfig) -> DemoData:
    """Generate the demo experiment: exposures, interaction logs and per-user ground truth.

    Parameters
    ----------
    config : DemoConfig
        Size, seed, timeline and effect sizes. The same config always yields identical tables.

    Returns
    -------
    DemoData
        ``exposures`` (GrowthBook ``experiment_viewed`` rows: user_id, timestamp, experiment_id,
        variation_id, feature_key, attributes), ``interactions`` (the contract's LLM log
        columns, chronological) and ``truth`` (user_id, variation, is_new, adaptive,
        activity_rate, adaptation_amplitude, first_exposure, multiple_exposure), plus the
        config. Timestamps are ISO-8601 UTC strings with milliseconds and ``Z``.

    Notes
    -----
    A user's first exposure is their first interaction at or after the experiment start;
    before it everybody talks to the control model. Users of variation "1" become adaptive
    with probability ``sigmoid(a + b * log(rate / median rate))`` and then adapt with
    strength ``A * (1 - exp(-t / tau_days))`` after ``t`` days, a half-life of
    ``tau_days * ln 2``.
    """
    cfg, rng = config, np.random.default_rng(config.seed)
    n, n_var = cfg.n_users, cfg.variations
    start_ms = round(cfg.start.timestamp() * 1000)
    exp_ms, end_ms = start_ms + cfg.pre_days * DAY_MS, round(cfg.end.timestamp() * 1000)

    # Users: lognormal activity with the requested mean, so a few heavy users dominate volume.
    log_median = math.log(cfg.mean_rate) - cfg.rate_sigma**2 / 2
    rate = np.minimum(rng.lognormal(log_median, cfg.rate_sigma, n), 50.0)
    is_new = rng.random(n) < cfg.new_user_share
    joined = (rng.random(n) * (end_ms - exp_ms)).astype(np.int64) + exp_ms
    arrival = np.where(is_new, joined, start_ms)
    variation = rng.integers(0, n_var, n)
    favourite = rng.choice(len(TOPIC_WEIGHTS), n, p=TOPIC_WEIGHTS)
    country = rng.choice(len(COUNTRIES), n, p=COUNTRY_WEIGHTS)
    plan = rng.choice(len(PLANS), n, p=PLAN_WEIGHTS)
    a, b = cfg.adaptive_logit
    p_adaptive = 1 / (1 + np.exp(-(a + b * (np.log(rate) - log_median))))
    adaptive = (rng.random(n) < p_adaptive) & (variation == 1)
    amplitude = rng.uniform(*cfg.amplitude_range, n)
    extra_k = rng.integers(cfg.extra_exposures[0], cfg.extra_exposures[1] + 1, n)

    # Sessions arrive as a Poisson process; the turns of one follow a minute or two apart.
    n_sessions = rng.poisson(rate / cfg.turns_per_session * (end_ms - arrival) / DAY_MS)
    session_user = np.repeat(np.arange(n), n_sessions)
    span = end_ms - arrival[session_user]
    session_start = arrival[session_user] + (rng.random(len(span)) * span).astype(np.int64)
    turns = rng.geometric(1 / cfg.turns_per_session, len(span))
    row_session = np.repeat(np.arange(len(turns)), turns)
    gaps = (rng.exponential(100_000, len(row_session)) + 5_000).astype(np.int64)
    first_turn = np.cumsum(turns) - turns
    gaps[first_turn] = 0
    elapsed = np.cumsum(gaps)
    ts = session_start[row_session] + elapsed - np.repeat(elapsed[first_turn], turns)
    row_session = row_session[ts < end_ms]
    ts = ts[ts < end_ms]
    user = session_user[row_session]
    o = np.lexsort((ts, user))
    ts, user, row_session = ts[o], user[o], row_session[o]

    # First exposure: the first interaction in the experiment, a few ms after the SDK fired.
    post = ts >= exp_ms
    post_rows = np.flatnonzero(post)
    exposed_users, first_pos = np.unique(user[post_rows], return_index=True)
    first_row = np.full(n, -1)
    first_row[exposed_users] = post_rows[first_pos]
    exposed = first_row >= 0
    first_ms = np.full(n, -1, dtype=np.int64)
    lead = rng.integers(3, 400, len(exposed_users))
    first_ms[exposed] = np.maximum(exp_ms, ts[first_row[exposed]] - lead)
    adaptive &= exposed
    amplitude = np.where(adaptive, amplitude, 0.0)

    # SDKs fire again on later active days: up to extra_k random later days per user.
    day = ts // DAY_MS
    new_day = np.r_[True, (user[1:] != user[:-1]) | (day[1:] != day[:-1])]
    candidates = np.flatnonzero(post & new_day & (day > first_ms[user] // DAY_MS))
    by_user = candidates[np.lexsort((rng.random(len(candidates)), user[candidates]))]
    group_start = np.r_[True, user[by_user][1:] != user[by_user][:-1]]
    pos = np.arange(len(by_user))
    rank = pos - np.maximum.accumulate(np.where(group_start, pos, 0))
    repeat_rows = by_user[rank < extra_k[user[by_user]]]
    repeat_ms = ts[repeat_rows] - rng.integers(3, 400, len(repeat_rows))

    # Multiple exposures: a device switch shows a few users a second variation once, later.
    n_multi = 0
    if cfg.multiple_exposure_share > 0 and len(exposed_users) >= 2:
        n_multi = max(1, round(cfg.multiple_exposure_share * len(exposed_users)))
    multi = np.sort(rng.choice(exposed_users, n_multi, replace=False))
    other_var = (variation[multi] + rng.integers(1, n_var, n_multi)) % n_var
    later = np.searchsorted(user, multi, side="right") - 1 - first_row[multi]
    pick = first_row[multi] + 1 + (rng.random(n_multi) * later).astype(np.int64)
    fallback = first_ms[multi] + rng.integers(60_000, 3_600_000, n_multi)
    multi_ms = np.where(later > 0, ts[np.minimum(pick, len(ts) - 1)] - 3, fallback)
    multi_ms = np.clip(multi_ms, first_ms[multi] + 1, end_ms - 1)
    is_multi = np.zeros(n, dtype=bool)
    is_multi[multi] = True

    uids, var_names = _user_ids(n), pa.array([str(v) for v in range(n_var)])
    ex_user = np.concatenate([exposed_users, user[repeat_rows], multi])
    ex_ms = np.concatenate([first_ms[exposed_users], repeat_ms, multi_ms])
    ex_var = np.concatenate([variation[exposed_users], variation[user[repeat_rows]], other_var])
    o = np.lexsort((ex_var, ex_user, ex_ms))
    ex_user, ex_ms, ex_var = ex_user[o], ex_ms[o], ex_var[o]
    ex_uid = uids.take(pa.array(ex_user))
    countries = pa.array(COUNTRIES).take(pa.array(country[ex_user]))
    plans = pa.array(PLANS).take(pa.array(plan[ex_user]))
    attributes = pc.binary_join_element_wise(
        '{"id": "', ex_uid, '", "country": "', countries, '", "plan": "', plans, '"}', ""
    )
    exposures = pa.table(
        {
            "user_id": ex_uid,
            "timestamp": _iso(ex_ms),
            "experiment_id": pa.array([cfg.experiment_id] * len(o), pa.string()),
            "variation_id": var_names.take(pa.array(ex_var)),
            "feature_key": pa.array([cfg.feature_key] * len(o), pa.string()),
            "attributes": attributes,
        }
    )

    # Interactions are logged chronologically; per-row draws happen in that order.
    o = np.lexsort((user, ts))
    ts, user, row_session, post = ts[o], user[o], row_session[o], post[o]
    n_rows, var_row = len(ts), variation[user]
    treated = post & (var_row == 1)
    since = np.maximum(0, ts - first_ms[user]) / DAY_MS
    growth = amplitude[user] * (1 - np.exp(-since / cfg.tau_days))
    strength = np.where(post & adaptive[user], growth, 0.0)
    days = (ts - start_ms) / DAY_MS
    topic = np.where(
        rng.random(n_rows) < _FAVOURITE_TOPIC,
        favourite[user],
        rng.choice(len(TOPIC_WEIGHTS), n_rows, p=TOPIC_WEIGHTS),
    )
    event_id = _hex_ids(rng, n_rows, 16, uuid=True)
    session_ids = _hex_ids(rng, len(turns), 8, uuid=False)
    latency = rng.lognormal(math.log(cfg.latency_median_ms), cfg.latency_sigma, n_rows)
    u = rng.random((n_rows, 3))
    up = cfg.thumbs_up_rate + cfg.feedback_lift * treated
    feedback = np.where(u[:, 0] < up, 1, np.where(u[:, 0] < up + cfg.thumbs_down_rate, -1, 0))
    prompts, responses = [], []
    for lo in range(0, n_rows, CHUNK_ROWS):
        part = slice(lo, lo + CHUNK_ROWS)
        prompts.append(_prompts(rng, cfg, topic[part], days[part], strength[part]))
        responses.append(_responses(rng, cfg, topic[part], treated[part]))
    models = pa.array([cfg.model_for(v) for v in range(n_var)])
    interactions = pa.table(
        {
            "event_id": event_id,
            "user_id": uids.take(pa.array(user)),
            "timestamp": _iso(ts),
            "prompt": pa.chunked_array(prompts, pa.string()),
            "response": pa.chunked_array(responses, pa.string()),
            "model_version": models.take(pa.array(np.where(post, var_row, 0))),
            "session_id": session_ids.take(pa.array(row_session)),
            "latency_ms": pa.array(np.round(latency, 1), pa.float64()),
            "feedback": pa.array(feedback.astype(np.int8)),
            "complaint": pa.array((u[:, 1] < cfg.complaint_rate).astype(np.int8)),
            "retry": pa.array((u[:, 2] < cfg.retry_rate).astype(np.int8)),
        }
    )

    is_exposed = pa.array(exposed)
    truth = pa.table(
        {
            "user_id": uids,
            "variation": pc.if_else(is_exposed, var_names.take(pa.array(variation)), ""),
            "is_new": pa.array(is_new),
            "adaptive": pa.array(adaptive),
            "activity_rate": pa.array(np.round(rate, 4)),
            "adaptation_amplitude": pa.array(np.round(amplitude, 3)),
            "first_exposure": pc.if_else(is_exposed, _iso(np.maximum(first_ms, 0)), ""),
            "multiple_exposure": pa.array(is_multi),
        }
    )
    return DemoData(exposures, interactions, truth, cfg)


@contextlib.contextmanager
def _open(path: Path, compress: bool) -> Iterator[io.BufferedIOBase]:
    with open(path, "wb") as raw:
        if not compress:
            yield raw
            return
        # mtime=0 and no file name in the header keep gzip output byte-identical across runs;
        # level 3 writes the 1 GB demo ~2x faster than the default for ~30% more bytes.
        with gzip_lib.GzipFile(
            filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=3
        ) as zipped:
            yield zipped


def _write_jsonl(table: pa.Table, out: io.BufferedIOBase) -> None:
    names = table.column_names
    for batch in table.to_batches(max_chunksize=8_192):
        columns = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
        lines = []
        for row in zip(*columns, strict=True):
            record = {k: v for k, v in zip(names, row, strict=True) if v is not None}
            if "attributes" in record:  # a nested object, not a string holding JSON
                record["attributes"] = orjson.loads(record["attributes"])
            lines.append(orjson.dumps(record))
        if lines:
            out.write(b"\n".join(lines) + b"\n")


def write_demo(
    data: DemoData,
    out_dir: Path,
    *,
    fmt: Literal["csv", "jsonl", "parquet"] = "csv",
    gzip: bool = False,
) -> dict[str, Path]:
    """Write exposures and interactions as ``fmt`` (optionally gzipped, ``.gz``), the ground
    truth as plain ``truth.csv`` and a ``manifest.json``; return the paths by name."""
    if fmt not in ("csv", "jsonl", "parquet"):
        raise ValueError(f"unknown format {fmt!r}; use csv, jsonl or parquet")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, table in (("exposures", data.exposures), ("interactions", data.interactions)):
        path = out_dir / f"{name}.{fmt}{'.gz' if gzip else ''}"
        with _open(path, gzip) as out:
            if fmt == "csv":
                pacsv.write_csv(table, out)
            elif fmt == "jsonl":
                _write_jsonl(table, out)
            else:
                pq.write_table(table, out)
        paths[name] = path
    paths["truth"] = out_dir / "truth.csv"
    pacsv.write_csv(data.truth, paths["truth"])

    manifest: dict[str, Any] = {
        "format": fmt,
        "gzip": gzip,
        "files": {name: path.name for name, path in paths.items()},
        "rows": {
            "exposures": data.exposures.num_rows,
            "interactions": data.interactions.num_rows,
            "users": data.truth.num_rows,
        },
    }
    if data.config is not None:
        cfg = data.config
        manifest["config"] = {
            k: v.isoformat() if isinstance(v, datetime) else v
            for k, v in dataclasses.asdict(cfg).items()
        }
        manifest["experiment"] = {
            "experiment_id": cfg.experiment_id,
            "feature_key": cfg.feature_key,
            "control": "0",
            "start": cfg.experiment_start.isoformat(),
            "end": cfg.end.isoformat(),
            "models": {str(v): cfg.model_for(v) for v in range(cfg.variations)},
            "true_half_life_days": cfg.tau_days * math.log(2),
        }
    paths["manifest"] = out_dir / "manifest.json"
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    paths["manifest"].write_text(text, encoding="utf-8")
    return paths
