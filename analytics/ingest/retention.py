"""Which interactions keep their text (``AFTERSHOCK_STORE_TEXT``, ``--store-text``).

The analysis never reads prompts or responses: ingest computes every feature from the full text
and stores the features. What the text is still for is a person reading examples (the
dashboard's before-and-after prompts of one user), and for that a few users are enough, so by
default only a fixed sample of users keeps it:

- ``all``: every interaction keeps its prompt and response.
- ``sample`` (the default): the interactions of users in a deterministic hash sample of
  ``AFTERSHOCK_TEXT_SAMPLE_SHARE`` (default 10%) keep it; the others are stored without text.
  A user is in the sample or not on every ingest, whatever the file or the machine.
- ``none``: no text is stored.

Conflicting duplicates are still found whatever the mode: each row's content digest is taken
from the full text before it is dropped (:mod:`analytics.ingest.conflicts`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

TextMode = Literal["all", "sample", "none"]
TEXT_COLUMNS = ("prompt", "response")
_TWO_TO_THE_64 = float(2**64)


def in_text_sample(user_ids: pa.Array | pa.ChunkedArray, share: float) -> np.ndarray:
    """Whether each user is in the text sample: the user id's 64-bit SipHash (pandas' fixed
    key), as a fraction of 2**64, is below ``share``. Deterministic and uniform, so about
    ``share`` of users are in it, the same ones every time."""
    # pa.chunked_array([...]) of a ChunkedArray would convert it value by value.
    chunked = user_ids if isinstance(user_ids, pa.ChunkedArray) else pa.chunked_array([user_ids])
    values = pd.Series(pd.arrays.ArrowExtensionArray(chunked))
    hashed = pd.util.hash_pandas_object(values, index=False).to_numpy(dtype=np.uint64)
    return np.asarray(hashed / _TWO_TO_THE_64 < share, dtype=bool)


@dataclass(frozen=True)
class TextRetention:
    mode: TextMode = "sample"
    share: float = 0.1

    def describe(self) -> str:
        if self.mode == "sample":
            return f"sample: the text of {self.share:.0%} of users"
        return {"all": "all: every interaction's text", "none": "none: no text"}[self.mode]

    def apply(self, table: pa.Table) -> pa.Table:
        """``table`` with the text of the interactions whose user is not kept set to null."""
        if self.mode == "all" or table.num_rows == 0:
            return table
        if self.mode == "none":
            kept = np.zeros(table.num_rows, dtype=bool)
        else:
            kept = in_text_sample(table.column("user_id"), self.share)
        mask = pa.array(kept)
        for name in TEXT_COLUMNS:
            if name in table.column_names:
                index = table.schema.get_field_index(name)
                column = table.column(index)
                dropped = pc.if_else(mask, column, pa.nulls(table.num_rows, type=column.type))
                table = table.set_column(index, name, dropped)
        return table
