"""Model files that differ from a trained one only in their trust record: an earlier
imgcls's file (none), or a threshold that turns every image away."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from imgcls.modelfile.artifact import build_network, read_card, read_weights, save_model
from imgcls.modelfile.card import TrustRecord


def with_trust(source: Path, target: Path, trust: TrustRecord | None) -> Path:
    """A copy of `source`'s model file (weights as trained) whose card has `trust`."""
    card = read_card(source)
    network = build_network(card)
    network.load_state_dict(read_weights(source))
    target.parent.mkdir(parents=True, exist_ok=True)
    save_model(target, network, replace(card, trust=trust))
    return target


def rejecting_all(source: Path, target: Path) -> Path:
    """`source` with a threshold no image reaches: every answer is unknown."""
    trust = read_card(source).trust
    assert trust is not None, "the source model was trained with calibration"
    return with_trust(source, target, replace(trust, threshold=1e9))
