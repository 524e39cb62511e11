"""Shared fixtures: small runs trained once per session and reused by many tests."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch

import imgcls

# Tests share 2 cores with nothing else; a fixed thread count also keeps them repeatable.
torch.set_num_threads(2)
# Decoded folders are cached on disk; keep the tests' caches out of the user's home.
os.environ.setdefault("IMGCLS_CACHE_DIR", tempfile.mkdtemp(prefix="imgcls-cache-"))
# Tests never download weights (--model auto on photos would try) nor read the user's torch
# cache: they make the weights files they use.
os.environ["IMGCLS_OFFLINE"] = "1"
os.environ["TORCH_HOME"] = tempfile.mkdtemp(prefix="imgcls-torch-home-")


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """lenet5 trained 3 epochs on digits in fp32 (so the Predictor must match it exactly)."""
    output = tmp_path_factory.mktemp("runs") / "digits-lenet5"
    return imgcls.train(
        data="digits", model="lenet5", epochs=3, batch_size=64, precision="fp32",
        output=str(output), show_progress=False,
    )
