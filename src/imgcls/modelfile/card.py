"""ModelCard: what a model file says about its network, typed.

The card travels as JSON in the model file's header (safetensors metadata key `imgcls`, see
artifact.py) and inside exports (ONNX metadata_props, TorchScript's imgcls.json). Its
`format_version` lets a newer imgcls read an older file: `from_header` migrates the document
step by step to FORMAT_VERSION before reading it, and refuses one from a newer imgcls.

Version history:
  1  architecture, class_names, input, normalization, metrics, training, data, versions
  2  + runtime: the memory format and precision the network was trained with
     (+ optional trust: the temperature and the "none of my classes" rule fitted after
     training; an optional section, so no new format: an older imgcls keeps it unread in
     `extra` and predicts uncalibrated, never refuses the file)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from imgcls.errors import UserError

FORMAT_VERSION = 2
# Top-level keys the card reads; any other key (an export's "export" note) is kept as is.
_KNOWN_KEYS = frozenset({"format_version", "architecture", "class_names", "input",
                         "normalization", "metrics", "training", "data", "versions", "runtime",
                         "trust"})


@dataclass(frozen=True)
class Architecture:
    """The registry name and keyword arguments that rebuild the network."""

    name: str
    kwargs: dict[str, Any]


@dataclass(frozen=True)
class InputShape:
    channels: int
    height: int
    width: int

    @property
    def size(self) -> int:
        """The square side the images are resized to."""
        return self.height

    @property
    def chw(self) -> tuple[int, int, int]:
        return self.channels, self.height, self.width


@dataclass(frozen=True)
class TrainingRecord:
    config: dict[str, Any]  # TrainConfig.to_dict() of the run
    best_epoch: int | None


@dataclass(frozen=True)
class DataRecord:
    source: str  # what --data named, as the data set describes itself
    split_hash: str | None  # Split.content_hash: whether the same split can be rebuilt
    # --relabel / --exclude applied in memory: files, their sha256, how many items changed
    fixes: dict | None = None


@dataclass(frozen=True)
class RuntimeRecord:
    """How the network ran in training; prediction uses the same memory format."""

    channels_last: bool
    precision: str  # "fp32" | "bf16" | "fp16" (prediction itself runs in fp32)


@dataclass(frozen=True)
class TrustRecord:
    """What makes the answers trustworthy, fitted on the validation split after training:
    probabilities calibrated by `temperature` (logits / temperature: artifact.load_model folds
    it into the head, so every backend and export applies it), and "none of my classes" when
    an image's familiarity (`score`) falls below `threshold`."""

    temperature: float
    # "energy": familiarity = logsumexp(logits as trained / energy_temperature), Liu et al.'s
    # energy score (negated, over that temperature)
    score: str
    threshold: float | None  # familiarity below it answers "unknown"; None: never
    keep: float  # the share of the validation images the threshold keeps
    fitted: dict[str, Any] = field(default_factory=dict)  # split, images, NLL and ECE before/after
    energy_temperature: float = 2.0


@dataclass(frozen=True)
class ModelCard:
    architecture: Architecture
    class_names: list[str]
    input: InputShape
    normalization: dict[str, Any]  # Normalizer's statistics
    metrics: dict[str, Any] = field(default_factory=dict)
    training: TrainingRecord | None = None
    data: DataRecord | None = None
    versions: dict[str, str] = field(default_factory=dict)
    runtime: RuntimeRecord | None = None  # None: a file from before format 2
    trust: TrustRecord | None = None  # None: uncalibrated, never "unknown" (earlier files)
    extra: dict[str, Any] = field(default_factory=dict)  # keys this imgcls does not read

    @property
    def model_name(self) -> str:
        return self.architecture.name

    @property
    def data_source(self) -> str | None:
        """The data the model was trained on (its `--data`); None: not recorded."""
        return self.data.source if self.data is not None else None

    @property
    def familiarity_scale(self) -> float:
        """What familiarity multiplies the network's (calibrated) logits by before their
        logsumexp: the temperature over the energy's, so it is the trained network's own
        energy score (a file without a trust record: its logits' logsumexp)."""
        if self.trust is None:
            return 1.0
        return self.trust.temperature / self.trust.energy_temperature

    def to_header(self) -> dict[str, Any]:
        """The JSON document of the model file's header (format FORMAT_VERSION)."""
        document: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "architecture": {"name": self.architecture.name, "kwargs": self.architecture.kwargs},
            "class_names": self.class_names,
            "input": {"channels": self.input.channels, "height": self.input.height,
                      "width": self.input.width},
            "normalization": self.normalization,
            "metrics": self.metrics,
        }
        if self.training is not None:
            document["training"] = {"config": self.training.config,
                                    "best_epoch": self.training.best_epoch}
        if self.data is not None:
            document["data"] = {"source": self.data.source, "split_hash": self.data.split_hash,
                                **({"fixes": self.data.fixes} if self.data.fixes else {})}
        if self.runtime is not None:
            document["runtime"] = {"channels_last": self.runtime.channels_last,
                                   "precision": self.runtime.precision}
        if self.trust is not None:
            document["trust"] = asdict(self.trust)
        return {**document, "versions": self.versions, **self.extra}

    @classmethod
    def from_header(cls, document: dict[str, Any], *, origin: str = "model file") -> ModelCard:
        """The card of a header document of any format up to FORMAT_VERSION."""
        document = migrate(document, origin)
        try:
            return cls(
                architecture=Architecture(**document["architecture"]),
                class_names=list(document["class_names"]),
                input=InputShape(**document["input"]),
                normalization=document["normalization"],
                metrics=document.get("metrics") or {},
                training=_optional(TrainingRecord, document.get("training")),
                data=_optional(DataRecord, document.get("data")),
                versions=document.get("versions") or {},
                runtime=_optional(RuntimeRecord, document.get("runtime")),
                trust=_optional(TrustRecord, document.get("trust")),
                extra={k: v for k, v in document.items() if k not in _KNOWN_KEYS},
            )
        except (KeyError, TypeError) as error:
            raise UserError(f"{origin}: its imgcls metadata is incomplete ({error!r})") from None


def migrate(document: dict[str, Any], origin: str) -> dict[str, Any]:
    """`document` brought up to FORMAT_VERSION, one version at a time."""
    version = int(document.get("format_version", 1))
    if version > FORMAT_VERSION:
        raise UserError(f"{origin} uses model-file format {version}; this imgcls reads up to "
                        f"{FORMAT_VERSION}: upgrade imgcls")
    while version < FORMAT_VERSION:
        document = MIGRATIONS[version](document)
        version += 1
    return {**document, "format_version": FORMAT_VERSION}


def _runtime_unknown(document: dict[str, Any]) -> dict[str, Any]:
    # Format 1 did not record the memory format: runtime stays absent and the Predictor
    # falls back to the network's own default (ModelSpec.channels_last), as it did then.
    return dict(document)


# MIGRATIONS[n] turns a format-n document into a format-(n+1) one.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _runtime_unknown}


def _optional(kind: type, section: dict[str, Any] | None) -> Any:
    return None if section is None else kind(**section)
