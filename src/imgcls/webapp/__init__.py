"""The phone app: a static, installable web page that classifies offline in the browser.

`build_web_app` writes it as a folder (`imgcls export --format web`); `web_app_files`
gives the same files in memory (`imgcls serve` at /app). The model runs under
onnxruntime-web, vendored in vendor/ so that building needs no network. The export ships the
int8 model where its check passes (shipped.py) and times it in Chromium (latency.py).
"""

from imgcls.webapp.build import build_web_app, web_app_files

__all__ = ["build_web_app", "web_app_files"]
