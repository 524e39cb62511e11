"""What the Docker image does, without docker: the Dockerfile's CMD with its ENV values, as
its non-root user, against a read-only copy of a model. It must refuse to start without an
API key (it listens on 0.0.0.0), and serve with one read from a secret file.

Run as root (to switch user with setpriv); skipped otherwise. The differences from the
image: the interpreter and packages are this machine's (a launcher named `imgcls`, as pip
writes one, stands first on PATH), the port is a free one rather than 8000, and the model
lies in a temporary folder rather than /model.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from imgcls.serve.live import free_port, wait_ready

DOCKERFILE = Path(__file__).resolve().parents[2] / "Dockerfile"

_needs = pytest.mark.skipif(
    sys.platform != "linux" or os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv to run the server as the image's user")
pytestmark = [pytest.mark.multiprocess, pytest.mark.slow, _needs]


def dockerfile() -> tuple[dict[str, str], list[str], int, list[str]]:
    """ENV, CMD, the user's uid (from its useradd) and HEALTHCHECK's command."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    env: dict[str, str] = {}
    command: list[str] = []
    health: list[str] = []
    uid = None
    for line in text.splitlines():
        keyword, _, rest = line.strip().partition(" ")
        if keyword == "ENV":
            env.update(item.split("=", 1) for item in shlex.split(rest))
        elif keyword == "CMD":
            command = json.loads(rest)
        elif keyword == "HEALTHCHECK":
            health = shlex.split(rest.split(" CMD ", 1)[1])
        elif keyword == "RUN" and "useradd" in rest:
            uid = int(re.search(r"--uid (\d+)", rest).group(1))
    assert command and uid is not None and health, "the Dockerfile's CMD, useradd or HEALTHCHECK"
    return env, command, uid, health


def as_user(uid: int) -> list[str]:
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]


def interpreter_for(uid: int) -> str:
    """This Python if the user may run it, else the system's of the same version (a venv's
    interpreter may sit under root's 0700 home)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (sys.executable, f"/usr/bin/python{version}",
                      shutil.which(f"python{version}")):
        if candidate is None:
            continue
        probe = subprocess.run([*as_user(uid), candidate, "-c", "import sys; print("
                                "f'{sys.version_info.major}.{sys.version_info.minor}')"],
                               capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return candidate
    pytest.skip(f"no Python {version} that uid {uid} may run")


@pytest.fixture(scope="module")
def image_root(digits_run: Path) -> Iterator[Path]:
    """/model (read-only, files 0644 as the umask leaves them), a secret file, and a bin
    folder whose `imgcls` runs this checkout's package."""
    _, _, uid, _ = dockerfile()
    root = Path(tempfile.mkdtemp(prefix="imgcls-image-", dir="/tmp"))
    root.chmod(0o755)  # pytest's tmp_path is 0700: the user could not reach it
    model = root / "model"
    model.mkdir()
    shutil.copyfile(digits_run / "model.safetensors", model / "model.safetensors")
    (model / "model.safetensors").chmod(0o644)
    model.chmod(0o555)  # a-w, as a `:ro` mount
    secret = root / "api_key"
    secret.write_text("s3cret\n")
    secret.chmod(0o644)  # Kubernetes' default mode for secret files
    image = root / "x.png"
    Image.effect_noise((32, 32), 60).save(image)
    image.chmod(0o644)
    bin_folder = root / "bin"
    bin_folder.mkdir(mode=0o755)
    launcher = bin_folder / "imgcls"
    interpreter, packages = interpreter_for(uid), sysconfig.get_paths()["purelib"]
    readable = subprocess.run([*as_user(uid), interpreter, "-c", "import site; site.addsitedir"
                               f"({packages!r}); import imgcls"], capture_output=True,
                              env={"PATH": "/usr/bin:/bin"})
    if readable.returncode != 0:  # e.g. a checkout inside a 0700 folder (mktemp -d)
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"uid {uid} cannot import this checkout's packages ({packages})")
    launcher.write_text(f"#!{interpreter}\nimport site, sys\n"
                        f"site.addsitedir({packages!r})\n"
                        "from imgcls.cli import main\nsys.exit(main())\n")
    launcher.chmod(0o755)
    yield root
    model.chmod(0o755)
    shutil.rmtree(root)


def container(root: Path, port: int, **extra_env: str) -> subprocess.Popen[str]:
    env, command, uid, _ = dockerfile()
    env = {name: value.replace("/model/", f"{root}/model/") for name, value in env.items()}
    # HOME unwritable, as under Kubernetes' readOnlyRootFilesystem.
    env.update(PATH=f"{root}/bin:/usr/bin:/bin", HOME="/nonexistent",
               IMGCLS_PORT=str(port), IMGCLS_LOG_LEVEL="warning", **extra_env)
    return subprocess.Popen([*as_user(uid), *command], env=env, cwd="/", text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_without_a_key_the_image_refuses_to_start(image_root: Path) -> None:
    server = container(image_root, free_port())
    _, error = server.communicate(timeout=120)
    assert server.returncode == 2
    assert error.startswith("imgcls: error: refusing to serve on 0.0.0.0 without an API key")
    assert error.count("\n") == 1 and "IMGCLS_API_KEY" in error


def test_with_a_secret_file_it_serves_as_its_user(image_root: Path) -> None:
    _, _, uid, health = dockerfile()
    port = free_port()
    server = container(image_root, port, IMGCLS_API_KEY_FILE=str(image_root / "api_key"))
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base_url)
        body = (image_root / "x.png").read_bytes()
        headers = {"Content-Type": "image/png"}
        assert httpx.post(base_url + "/v1/predict", content=body, headers=headers,
                          timeout=30).status_code == 401
        answer = httpx.post(base_url + "/v1/predict", content=body, timeout=30,
                            headers={**headers, "Authorization": "Bearer s3cret"})
        assert answer.status_code == 200, answer.text
        python = (image_root / "bin" / "imgcls").read_text().splitlines()[0][2:]
        probe = [python if word == "python" else word.replace(":8000", f":{port}")
                 for word in health]
        assert subprocess.run([*as_user(uid), *probe], timeout=30).returncode == 0
        owner = Path(f"/proc/{server.pid}/status").read_text()  # setpriv execs in place
        assert re.search(rf"^Uid:\s+{uid}\s", owner, re.MULTILINE)
    finally:
        server.send_signal(signal.SIGTERM)
        _, error = server.communicate(timeout=60)
    assert server.returncode in (0, -signal.SIGTERM), error
    assert "Traceback" not in error, error
    assert sorted(p.name for p in (image_root / "model").iterdir()) == ["model.safetensors"]

