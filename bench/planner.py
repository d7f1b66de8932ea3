"""``python -m bench.planner USERS [RUNS]``: the planner's search of the plan space.

Builds a seeded treated population of USERS users (the rollout simulator's world,
tests/rollout_world.py: 30% adapting, adaptation p-values, tenure, activity and per-user
guardrail metrics), then times ``rollout.planner.plan_rollback`` RUNS times (default 5) in
this process after one warm-up: cohorts, GrowthBook buckets, the power of every step, every
option costed on both harms, the Pareto front and the recommendation. Prints one JSON line:
{"users", "options", "runs", "median_s", "min_s", "max_s"}.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

from rollout.planner import Policy
from tests.rollout_world import Scenario, make_world, plan_for


def main() -> None:
    users = int(sys.argv[1])
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    world = make_world(Scenario(users, 0.3), seed=1)
    policy = Policy(bridge_value="bridge")
    plan = plan_for(world, policy)  # warm-up
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        plan = plan_for(world, policy)
        seconds.append(time.perf_counter() - start)
    print(
        json.dumps(
            {
                "users": users,
                "options": len(plan.options),
                "runs": runs,
                "median_s": statistics.median(seconds),
                "min_s": min(seconds),
                "max_s": max(seconds),
            }
        )
    )


if __name__ == "__main__":
    main()
