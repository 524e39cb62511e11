"""`imgcls calibrate MODEL`: fit (or refit) a model file's trust record after the fact, on
the validation split of the run that trained it, as training does at its end. For a model
file from before the trust record existed, or with another --ood-keep.

The file is rewritten in place (atomically) with the same weights and a new card; the
backend caches are keyed by the file's sha256, so its exports are rebuilt on next use."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from imgcls.data.normalize import Normalizer
from imgcls.data.sources import load_source
from imgcls.errors import UserError
from imgcls.evaluation.evaluate import model_labels, split_indices, trained_data
from imgcls.evaluation.trust import DEFAULT_KEEP, fit_trust
from imgcls.modelfile.artifact import build_network, model_file, read_card, read_weights, save_model
from imgcls.modelfile.card import TrustRecord
from imgcls.predict.inference import predict_logits


def calibrate_model_file(model_path: str | Path, *, data: str | None = None,
                         data_dir: str | None = None, keep: float = DEFAULT_KEEP) -> TrustRecord:
    """Fit the temperature and the `unknown` threshold on the model's validation split and
    write them into its card; returns the record."""
    if not 0 < keep <= 1:
        raise UserError(f"--ood-keep must be in (0, 1]; got {keep}")
    file = model_file(model_path)
    card = read_card(file)
    source = trained_data(file, card, data, flag="--data",
                          needed_for="calibration fits on its validation split")
    image_set = load_source(source, channels=card.input.channels, image_size=card.input.size,
                            data_dir=data_dir)
    trained_on = card.data is not None and card.data.source == image_set.source
    indices = split_indices(file, card, image_set, "val", trained_on)
    if len(indices) == 0:
        raise UserError(f"{file}'s run has no validation images to calibrate on")
    network = build_network(card)
    network.load_state_dict(read_weights(file))  # as trained: no temperature folded in
    logits = predict_logits(network.eval(), Normalizer(card.normalization),
                            image_set.images[torch.as_tensor(indices)])
    labels = model_labels(image_set, card.class_names)[indices]
    trust = fit_trust(logits.numpy(), np.asarray(labels), keep=keep)
    save_model(file, network, replace(card, trust=trust))
    return trust
