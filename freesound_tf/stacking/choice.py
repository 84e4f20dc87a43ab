"""Which ensemble to submit: a member, a blend or the stacker, chosen on the OOF matrix only.

Candidates are every member, the blends that score each clip on its own (mean, weighted mean,
geometric mean; the rank mean ranks clips against each other, so a server scoring one clip could
not reproduce it) and the stacker. The rule picks the candidate with the best OOF lwlrap; the
stacker's OOF rows come from stacker folds that never trained on them, so the comparison is fair.
On a tie the simpler candidate wins (members, then blends, then the stacker).

Picking the best of several scores is itself a fit, so the rule is checked by nested
cross-validation: the OOF rows are split into outer folds; on each outer training part the rule
runs afresh (the stacker re-fitted k-fold on those rows only) and the candidate it picks scores the
held-out rows. The lwlrap of those held-out scores estimates what the rule delivers on new clips,
and the picks per outer fold show how stable it is. Test scores are never looked at.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from freesound_tf.config import StackerConfig
from freesound_tf.data.folds import make_folds
from freesound_tf.metrics import lwlrap
from freesound_tf.stacking.blends import geometric_mean_blend, mean_blend, weighted_mean_blend
from freesound_tf.stacking.train import fit_stacker

KINDS_ORDER = ("member", "blend", "stacker")  # simpler first: ties go to the earlier kind
ServableBlend = Callable[[np.ndarray], np.ndarray]


def servable_blends(weights: Sequence[float]) -> dict[str, ServableBlend]:
    """Blends of member scores ``(members, clips, classes)`` that score every clip on its own."""
    return {"mean": mean_blend, "weighted_mean": lambda s: weighted_mean_blend(s, weights),
            "geometric_mean": geometric_mean_blend}


def fixed_candidates(names: Sequence[str], weights: Sequence[float]) -> dict[str, tuple[str, ServableBlend]]:
    """Every candidate without trained parameters: name -> (kind, scores of the members -> its scores)."""
    clash = set(names) & set(servable_blends(weights))
    if clash:
        raise ValueError(f"member name {sorted(clash)[0]!r} is also the name of a blend; rename that recipe")
    out: dict[str, tuple[str, ServableBlend]] = {
        name: ("member", lambda s, m=m: s[m]) for m, name in enumerate(names)}
    if len(names) > 1:
        out.update({name: ("blend", blend) for name, blend in servable_blends(weights).items()})
    return out


def pick(scores: dict[str, float], kinds: dict[str, str]) -> str:
    """The candidate with the highest score; ties go to the simpler kind, then to the first listed."""
    order = {name: (-scores[name], KINDS_ORDER.index(kinds[name]), k) for k, name in enumerate(scores)}
    return min(order, key=order.get)


@dataclass
class EnsembleChoice:
    name: str
    kind: str  # member | blend | stacker
    oof_lwlrap: dict[str, float]  # every candidate's OOF lwlrap
    nested_lwlrap: float | None  # the rule's held-out score in nested cross-validation (None: not run)
    nested_picks: list[str]  # the rule's pick in each outer fold
    best_member: str
    reason: str

    def to_json(self) -> dict:
        return asdict(self)


def choose_ensemble(member_oof: np.ndarray, labels: np.ndarray, names: Sequence[str], weights: Sequence[float],
                    stacker_oof: np.ndarray | None, config: StackerConfig, multilabel: bool = True,
                    groups: Sequence[str] | None = None) -> EnsembleChoice:
    """Pick the ensemble to submit from OOF scores only (see the module docstring).

    ``member_oof``: (members, clips, classes); ``stacker_oof``: the stacker's k-fold OOF scores, or
    None when no stacker is a candidate. ``config.selection_folds`` outer folds (0: no nested check),
    made of whole ``groups`` when given.
    """
    fixed = fixed_candidates(names, weights)
    kinds = {name: kind for name, (kind, _) in fixed.items()}
    scores = {name: lwlrap(labels, blend(member_oof)) for name, (_, blend) in fixed.items()}
    stacker = stacker_key(config, fixed)
    if stacker_oof is not None:
        kinds[stacker], scores[stacker] = "stacker", lwlrap(labels, stacker_oof)
    chosen = pick(scores, kinds)
    best_member = max(names, key=lambda n: scores[n])
    nested, picks = None, []
    if config.selection_folds:
        nested, picks = _nested_check(member_oof, labels, weights, fixed, stacker if stacker_oof is not None else None,
                                      config, multilabel, groups)
    ranked = sorted(scores, key=scores.get, reverse=True)
    runner_up = next((n for n in ranked if n != chosen), None)
    reason = f"{chosen} ({kinds[chosen]}) has the best OOF lwlrap, {scores[chosen]:.4f}"
    if runner_up is not None:
        reason += f" (next: {runner_up} {scores[runner_up]:.4f}; best member {best_member} {scores[best_member]:.4f})"
    if nested is not None:
        counts = {n: picks.count(n) for n in dict.fromkeys(picks)}
        reason += (f"; nested {config.selection_folds}-fold check of this rule: {nested:.4f} on held-out clips, "
                   f"picks " + ", ".join(f"{n} x{c}" for n, c in counts.items()))
    return EnsembleChoice(chosen, kinds[chosen], scores, nested, picks, best_member, reason)


def stacker_key(config: StackerConfig, fixed: dict) -> str:
    """The stacker's candidate name: its recipe name, unless a member or blend has that name already."""
    return config.name if config.name not in fixed else f"{config.name} (stacker)"


def _nested_check(member_oof: np.ndarray, labels: np.ndarray, weights: Sequence[float],
                  fixed: dict[str, tuple[str, ServableBlend]], stacker: str | None, config: StackerConfig,
                  multilabel: bool, groups: Sequence[str] | None) -> tuple[float, list[str]]:
    outer = make_folds(labels, config.selection_folds, config.folds.seed + 1, multilabel=multilabel, groups=groups)
    held_out = np.full(labels.shape, np.nan, np.float32)
    kinds = {name: kind for name, (kind, _) in fixed.items()}
    picks = []
    for o in range(config.selection_folds):
        train, test = outer != o, outer == o
        inner = {name: lwlrap(labels[train], blend(member_oof[:, train])) for name, (_, blend) in fixed.items()}
        stacked = None
        if stacker is not None:
            stacked = fit_stacker(member_oof[:, train].transpose(1, 2, 0), labels[train],
                                  member_oof[:, test].transpose(1, 2, 0), weights, config, None, multilabel,
                                  groups=None if groups is None else np.asarray(groups, dtype=object)[train])
            inner[stacker], kinds[stacker] = lwlrap(labels[train], stacked.oof), "stacker"
        chosen = pick(inner, kinds)
        picks.append(chosen)
        held_out[test] = stacked.test if kinds[chosen] == "stacker" else fixed[chosen][1](member_oof[:, test])
    return lwlrap(labels, held_out), picks
