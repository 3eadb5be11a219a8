"""Seed pairs: runs of a zoo that differ only in their seed, for the agreement measures."""

from __future__ import annotations

from collections import defaultdict

from gengap.specs import RunSpec


def seed_partners(runs: list[RunSpec]) -> dict[str, RunSpec]:
    """For each run that has one, the run with the same spec and the next seed (cyclically,
    in seed order), so seeds s₀ < s₁ < s₂ pair as s₀→s₁, s₁→s₂, s₂→s₀ and every run of a
    group is both one measured run and one partner. Runs alone in their group are left out."""
    groups: dict[str, list[RunSpec]] = defaultdict(list)
    for run in runs:
        groups[run.model_copy(update={"seed": 0}).canonical_json()].append(run)
    partners = {}
    for members in groups.values():
        if len(members) < 2:
            continue
        ordered = sorted(members, key=lambda r: r.seed)
        for i, run in enumerate(ordered):
            partners[run.run_id] = ordered[(i + 1) % len(ordered)]
    return partners
