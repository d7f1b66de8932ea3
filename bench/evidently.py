"""``python -m bench.evidently INTERACTIONS EXPOSURES [ROWS]``: the job a team would script
today with Evidently, the yardstick of Aftershock's end-to-end time.

Run by a Python that has Evidently (``bench.__main__`` makes one: see ``evidently_python``);
this module imports nothing from Aftershock. As Evidently's documentation shows it: both CSVs
read with pandas, each user's arm from their first exposure, 14 text descriptors (7 on the
prompts, 7 on the responses, the offline ones: no model or corpus download), and a
``DataDriftPreset`` report comparing the treatment's interactions with the control's on those
and on latency, feedback, complaints and retries. It answers less than ``aftershock analyze``
(interactions, not users, as the unit; no style shift by user, no adaptation). Prints one
JSON line: rows, seconds, peak_mb.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# Evidently's release the issue measured, and a pandas it imports with (0.7.23 fails on 3.x).
REQUIREMENTS = ["evidently==0.7.23", "pandas<3"]

NUMERIC = ["latency_ms", "feedback", "complaint", "retry"]
HEDGES = ["maybe", "perhaps", "I think", "not sure", "might", "could be"]
PUSHBACK = ["are you sure", "that's wrong", "actually", "I disagree", "double-check"]
REFUSALS = ["I can't", "I cannot", "I'm unable", "I won't"]
APOLOGIES = ["sorry", "apologize", "apologies"]


def descriptors() -> list[Any]:
    from evidently.descriptors import (  # type: ignore[import-not-found]
        BeginsWith,
        Contains,
        NonLetterCharacterPercentage,
        RegExp,
        SentenceCount,
        TextLength,
        WordCount,
    )

    per_text = []
    for column in ("prompt", "response"):
        per_text += [
            TextLength(column, alias=f"{column}_length"),
            WordCount(column, alias=f"{column}_words"),
            SentenceCount(column, alias=f"{column}_sentences"),
            NonLetterCharacterPercentage(column, alias=f"{column}_non_letters"),
            RegExp(column, reg_exp=r"```", alias=f"{column}_code_block"),
        ]
    return [
        *per_text,
        Contains("prompt", items=HEDGES, case_sensitive=False, alias="prompt_hedges"),
        Contains("prompt", items=PUSHBACK, case_sensitive=False, alias="prompt_pushback"),
        Contains("response", items=REFUSALS, case_sensitive=False, alias="response_refuses"),
        BeginsWith("response", prefix="You're right", alias="response_agrees"),
    ]


def run(interactions: Path, exposures: Path, rows: int | None) -> dict[str, float]:
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report  # type: ignore[import-not-found]
    from evidently.presets import DataDriftPreset  # type: ignore[import-not-found]

    start = time.perf_counter()
    logs = pd.read_csv(interactions, nrows=rows)
    first = pd.read_csv(exposures).sort_values("timestamp").drop_duplicates("user_id")
    logs = logs.merge(first[["user_id", "variation_id"]], on="user_id")
    definition = DataDefinition(numerical_columns=NUMERIC, text_columns=["prompt", "response"])

    def dataset(frame: Any) -> Any:
        return Dataset.from_pandas(
            frame[["prompt", "response", *NUMERIC]].reset_index(drop=True),
            data_definition=definition,
            descriptors=descriptors(),
        )

    control = logs["variation_id"].astype(str) == "0"
    Report([DataDriftPreset()]).run(dataset(logs[~control]), dataset(logs[control]))
    return {
        "rows": float(len(logs)),
        "seconds": time.perf_counter() - start,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def evidently_python(home: Path) -> str:
    """A Python with Evidently: a virtual environment under ``home``, made on first use (a
    minute, from the package index), so that Aftershock's own environment stays as it is."""
    venv = home / "evidently-venv"
    python = venv / "bin" / "python"
    stamp = venv / "requirements.txt"
    if not (python.exists() and stamp.exists() and stamp.read_text() == "\n".join(REQUIREMENTS)):
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *REQUIREMENTS],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        stamp.write_text("\n".join(REQUIREMENTS))
    return str(python)


if __name__ == "__main__":
    limit = int(sys.argv[3]) if len(sys.argv) > 3 else None
    print(json.dumps(run(Path(sys.argv[1]), Path(sys.argv[2]), limit)))
