"""Safe by default: `imgcls serve` refuses a host others can reach without an API key, unless
told --insecure; the key can come from a file (a Docker or Kubernetes secret)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from imgcls.cli import main
from imgcls.errors import UserError
from imgcls.serve.security import is_loopback
from imgcls.serve.server import check_exposure, run_service
from imgcls.serve.settings import ServeSettings


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost",
                                  "LocalHost"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "192.168.0.5", "example.com",
                                  ""])
def test_hosts_others_can_reach(host: str) -> None:
    assert not is_loopback(host)


def test_all_interfaces_without_a_key_is_refused(digits_run: Path, started: list[Any],
                                                 capsys: pytest.CaptureFixture) -> None:
    assert main(["serve", str(digits_run), "--host", "0.0.0.0"]) != 0
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith(
        "imgcls: error: refusing to serve on 0.0.0.0 without an API key")
    for fix in ("--api-key", "IMGCLS_API_KEY_FILE", "--host 127.0.0.1", "--insecure"):
        assert fix in error
    assert started == []


def test_insecure_starts_with_a_warning(digits_run: Path, started: list[Any],
                                        capsys: pytest.CaptureFixture,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["serve", str(digits_run), "--host", "0.0.0.0", "--insecure"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "without an API key" in warnings[0]
    assert started[-1].host == "0.0.0.0"
    monkeypatch.setenv("IMGCLS_INSECURE", "1")
    assert main(["serve", str(digits_run), "--host", "0.0.0.0"]) == 0
    monkeypatch.setenv("IMGCLS_INSECURE", "perhaps")
    assert main(["serve", str(digits_run), "--host", "0.0.0.0"]) == 2
    assert "IMGCLS_INSECURE is 'perhaps'" in capsys.readouterr().err


def test_a_key_or_loopback_needs_no_flag(digits_run: Path, started: list[Any],
                                         monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture) -> None:
    assert main(["serve", str(digits_run)]) == 0  # 127.0.0.1 by default
    monkeypatch.setenv("IMGCLS_API_KEY", "k")
    assert main(["serve", str(digits_run), "--host", "0.0.0.0"]) == 0
    assert "warning" not in capsys.readouterr().err
    assert len(started) == 2


def test_the_key_from_a_file(digits_run: Path, started: list[Any], tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture) -> None:
    secret = tmp_path / "api_key"
    secret.write_text("s3cret\n")  # as `echo` or an editor leaves it
    monkeypatch.setenv("IMGCLS_API_KEY_FILE", str(secret))
    assert main(["serve", str(digits_run), "--host", "0.0.0.0"]) == 0
    assert started[-1].app.state.service.settings.api_key == "s3cret"
    assert main(["serve", str(digits_run), "--api-key", "other"]) == 2
    assert "not both" in capsys.readouterr().err
    secret.write_text("\n")
    assert main(["serve", str(digits_run), "--host", "0.0.0.0"]) == 2
    assert "is empty" in capsys.readouterr().err
    monkeypatch.setenv("IMGCLS_API_KEY_FILE", str(tmp_path / "missing"))
    assert main(["serve", str(digits_run)]) == 2
    assert "cannot read the API key file" in capsys.readouterr().err


def test_the_checks_are_the_serve_packages() -> None:
    """imgcls.serve.server holds them (cli/serve.py only parses): the warning goes to `say`."""
    said: list[str] = []
    exposed = ServeSettings(host="0.0.0.0")
    with pytest.raises(UserError, match="refusing to serve on 0.0.0.0"):
        check_exposure(exposed, insecure=False, say=said.append)
    check_exposure(ServeSettings(host="0.0.0.0", api_key="k"), insecure=False, say=said.append)
    assert said == []
    check_exposure(exposed, insecure=True, say=said.append)
    assert len(said) == 1 and said[0].startswith("imgcls: warning: --insecure")
    with pytest.raises(UserError, match="serve needs a MODEL"):
        run_service(None, ServeSettings())
