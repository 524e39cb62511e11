"""Fixtures the serve tests share."""

from __future__ import annotations

from typing import Any

import pytest

_SERVE_VARIABLES = ("IMGCLS_API_KEY", "IMGCLS_API_KEY_FILE", "IMGCLS_INSECURE", "IMGCLS_HOST")


@pytest.fixture()
def started(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """uvicorn configs that `imgcls serve` ran (none bound a port)."""
    for variable in _SERVE_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    configs: list[Any] = []

    class RecordingServer:
        def __init__(self, config: Any) -> None:
            configs.append(config)

        def run(self) -> None:
            pass

    monkeypatch.setattr("uvicorn.Server", RecordingServer)
    return configs
