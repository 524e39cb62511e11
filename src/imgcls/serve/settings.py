"""Every setting of `imgcls serve`, with its default. The CLI fills it from flags and
IMGCLS_* environment variables; tests build it directly."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServeSettings:
    host: str = "127.0.0.1"  # loopback only, unless the operator says otherwise
    port: int = 8000
    api_key: str | None = None  # when set, every route but health needs `Bearer <key>`
    cors_origins: tuple[str, ...] = ()  # no CORS headers at all unless given
    max_batch: int = 32  # images per forward pass
    # How long the first image of a batch waits for company. 20 rather than 5: under 32
    # concurrent clients (bench/serve_throughput.py) 5 ms closes batches at ~16 images while
    # the other half is still being decoded; 20 ms fills them to ~32 and gives 1.2-1.3x the
    # images/s, for at most 20 ms more on a lone request.
    max_wait_ms: float = 20.0
    max_queue: int = 256  # images waiting or in a forward pass; more: 503 + Retry-After
    max_upload_mb: float = 10.0  # request body limit (413 beyond it)
    # Pixels per image, from its header, before decoding (413 beyond): a 167 KiB PNG can
    # claim 9400x9400. 40 M keeps every phone or DSLR photo up to 40 MP (7700x5200), far
    # over any model's input, and bounds one decode to 160 MB (RGBA at 4 bytes a pixel).
    max_pixels: int = 40_000_000
    timeout_s: float = 30.0  # per request, queueing included (504 beyond it)
    # The whole body must arrive within this (408 beyond): a stalled or trickling client
    # otherwise holds a connection, and a place under uvicorn's limit_concurrency, forever.
    read_timeout_s: float = 30.0
    topk: int = 5  # default ?topk
    model_name: str | None = None  # name in URLs and answers; default from the file name
    device: str | None = None  # cpu, cuda, cuda:1; default CUDA when present
    threads: int | None = None  # torch / onnxruntime threads; default: all cores
    backend: str = "torch"  # imgcls.predict.backends; auto times them at batch 1 and max_batch
    # Familiarity under which an answer is "unknown": "card" (the model file's threshold),
    # "off", or a number; a request's ?reject_below= overrides it (prediction.py).
    reject_below: float | str = "card"
    log_level: str = "info"
    explain: bool = False  # POST /v1/explain (Grad-CAM; needs the model.safetensors and torch)

    def __post_init__(self) -> None:
        checks = {
            "max_batch": self.max_batch >= 1, "max_queue": self.max_queue >= 1,
            "max_wait_ms": self.max_wait_ms >= 0, "max_upload_mb": self.max_upload_mb > 0,
            "max_pixels": self.max_pixels >= 1,
            "timeout_s": self.timeout_s > 0, "read_timeout_s": self.read_timeout_s > 0,
            "topk": self.topk >= 1,
            "port": 0 <= self.port <= 65535,
        }
        wrong = [name for name, ok in checks.items() if not ok]
        if wrong:
            from imgcls.errors import UserError

            values = ", ".join(f"{name}={getattr(self, name)}" for name in wrong)
            raise UserError(f"serve settings out of range: {values}; see `imgcls serve --help`")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)
