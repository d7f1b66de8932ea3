"""RealHumanEval's chat arms as an Aftershock experiment: exposures and interactions CSVs.

RealHumanEval (Mozannar et al. 2024, https://arxiv.org/abs/2404.02806) randomised programmers
to one coding assistant each; its released ``data/chat_data.csv``
(https://github.com/clinicalml/realhumaneval) holds the chat arms: 1,055 messages from 107
programmers across four models. It is a real randomised experiment whose users have no history
before it, so it checks the analysis of users without a pre-period on data nobody simulated.

``python -m tools.realhumaneval chat_data.csv OUT_DIR`` writes ``OUT_DIR/exposures.csv`` and
``OUT_DIR/interactions.csv`` in the data contract's shapes (``docs/DATA_CONTRACT.md``):

- experiment ``realhumaneval-chat``; each programmer is exposed once, when their session
  starts, to the variation of their model: ``"0"`` GPT-3.5 (chat), the study's incumbent and
  so the control, ``"1"`` CodeLlama7b (chat), ``"2"`` CodeLlama34b (chat), ``"3"`` GPT-4o
  (chat);
- one interaction per chat message: the programmer's newest message in ``request`` (the
  conversation so far) is the prompt, ``response`` the reply, ``model`` the model version,
  ``task_name`` the session id;
- the study logs seconds since each session's start, not dates: session ``k`` (programmers
  in the order of their ids) is placed at ``START + k`` hours, so sessions never overlap and
  the experiment spans under five days.

The data file is not part of this repository (it is the study's, under its own licence);
the README says how to obtain it and what the analysis finds.
"""

from __future__ import annotations

import ast
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

EXPERIMENT = "realhumaneval-chat"
FEATURE = "coding-assistant-chat"
VARIATIONS = {
    "GPT-3.5 (chat)": "0",
    "CodeLlama7b (chat)": "1",
    "CodeLlama34b (chat)": "2",
    "GPT-4o (chat)": "3",
}
START = datetime(2024, 2, 1, tzinfo=UTC)
COLUMNS = ("request", "response", "programmer_id", "timestamp", "model", "task_name")


def last_user_message(request: str, row: int) -> str | None:
    """The programmer's newest message in a ``request`` cell (a Python list of chat turns).

    ``None`` for an empty list (the study logged two replies without their request). A cell
    that is not such a list, or has turns but no user turn, raises ``ValueError`` naming its
    data row (1 is the first after the header; cells span lines, so rows are not lines).
    """
    try:
        turns = ast.literal_eval(request)
        if turns == []:
            return None
        return next(t["content"] for t in reversed(turns) if t.get("role") == "user")
    except (ValueError, SyntaxError, TypeError, KeyError, AttributeError, StopIteration) as err:
        raise ValueError(f"row {row}: request is not a chat with a user turn ({err})") from err


def convert(chat: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, list[int]]:
    """(exposures, interactions, rows left out) of the chat arms, as the module docstring
    describes; a message whose request is empty has no prompt and is left out (its data row
    is returned so the caller can say so)."""
    missing = [c for c in COLUMNS if c not in chat.columns]
    if missing:
        raise ValueError(f"chat data lacks the column(s) {', '.join(missing)}")
    unknown = sorted(set(chat["model"]) - set(VARIATIONS))
    if unknown:
        raise ValueError(f"unknown model(s) {', '.join(map(str, unknown))}")
    arms = chat.groupby("programmer_id")["model"].nunique()
    if (arms > 1).any():
        raise ValueError(f"programmer(s) in more than one arm: {list(arms.index[arms > 1])}")

    programmers = sorted(chat["programmer_id"].unique())
    session_start = {p: START + timedelta(hours=k) for k, p in enumerate(programmers)}
    user_id = chat["programmer_id"].map(lambda p: f"rhe-{p}")
    first = chat.drop_duplicates("programmer_id")
    exposures = pd.DataFrame(
        {
            "user_id": first["programmer_id"].map(lambda p: f"rhe-{p}"),
            "timestamp": first["programmer_id"].map(lambda p: session_start[p].isoformat()),
            "experiment_id": EXPERIMENT,
            "variation_id": first["model"].map(VARIATIONS),
            "feature_key": FEATURE,
        }
    ).sort_values("timestamp", kind="stable")
    sent = [
        session_start[p] + timedelta(seconds=float(s))
        for p, s in zip(chat["programmer_id"], chat["timestamp"], strict=True)
    ]
    interactions = pd.DataFrame(
        {
            "event_id": [f"rhe-{i}" for i in range(len(chat))],
            "user_id": user_id,
            "timestamp": [t.isoformat() for t in sent],
            "prompt": [last_user_message(r, row) for row, r in enumerate(chat["request"], start=1)],
            "response": chat["response"],
            "model_version": chat["model"],
            "session_id": chat["task_name"],
        }
    )
    empty = interactions["prompt"].isna().to_numpy()
    return exposures, interactions[~empty], [int(i) + 1 for i in empty.nonzero()[0]]


def main(argv: list[str] | None = None) -> int:
    """``python -m tools.realhumaneval CHAT_CSV OUT_DIR``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m tools.realhumaneval chat_data.csv OUT_DIR", file=sys.stderr)
        return 2
    source, out = Path(args[0]), Path(args[1])
    try:
        exposures, interactions, left_out = convert(pd.read_csv(source))
    except ValueError as err:
        print(f"{source}: {err}", file=sys.stderr)
        return 1
    out.mkdir(parents=True, exist_ok=True)
    exposures.to_csv(out / "exposures.csv", index=False)
    interactions.to_csv(out / "interactions.csv", index=False)
    print(
        f"{len(exposures)} programmers, {len(interactions)} interactions -> {out}/"
        "exposures.csv, interactions.csv"
    )
    if left_out:
        rows = ", ".join(map(str, left_out))
        print(f"left out {len(left_out)} message(s) logged without a request: row(s) {rows}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
