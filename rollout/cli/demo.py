"""``aftershock demo generate``: the seeded demo data set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from rollout.cli.console import out


def generate(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write into.")] = Path(
        "data/demo"
    ),
    users: Annotated[int, typer.Option(min=10, help="Number of users.")] = 3000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
    variations: Annotated[int, typer.Option(min=2, help="Variations including control.")] = 2,
    fmt: Annotated[Literal["csv", "jsonl", "parquet"], typer.Option("--format")] = "csv",
    gzip: Annotated[bool, typer.Option("--gzip", help="Gzip the data files.")] = False,
) -> None:
    """Write the seeded demo data set (exposures, interactions, ground truth)."""
    from analytics.demo import DemoConfig, generate_demo, write_demo

    data = generate_demo(DemoConfig(n_users=users, seed=seed, variations=variations))
    paths = write_demo(data, out_dir, fmt=fmt, gzip=gzip)
    for name, path in paths.items():
        out.print(f"{name}: {path}", highlight=False)
