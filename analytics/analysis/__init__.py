"""The analysis stages, in the order the data flows through them.

cohorts -> user_periods (per-user sufficient statistics in SQL) -> drift and style tables
(``analytics.inference``) -> adaptation scores -> pipeline (the one place they are wired);
outcomes holds the per-user guardrail metrics the rollout reads after each stage.
"""
