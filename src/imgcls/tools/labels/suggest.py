"""`imgcls data suggest UNLABELED_DIR --model RUN`: the model's guess for each unlabeled image,
as a `path,label` CSV that `--data FILE.csv` accepts once a person has checked it.

The images most worth a look come first: least confident, then smallest margin between the
two likeliest classes (uncertainty sampling). `-n` keeps that many; `--min-confidence P`
leaves out the guesses below P. Paths are relative to the CSV's folder where they can be
(as `--data FILE.csv` reads them). A file that does not decode is named and left out.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

from imgcls.data.file_index import IMAGE_EXTENSIONS
from imgcls.errors import UserError
from imgcls.utils.csv_safe import safe_row
from imgcls.utils.files import write_text

CHUNK = 256  # images decoded and predicted at once


@dataclass(frozen=True)
class Guess:
    path: Path
    label: str
    confidence: float
    margin: float  # top-1 minus top-2 probability


@dataclass(frozen=True)
class Suggestions:
    written: Path
    kept: list[Guess]
    below_confidence: int  # guesses left out by --min-confidence
    unreadable: list[tuple[str, str]]  # (path, why)


def suggest_labels(folder: str | Path, model: str | Path, output: str | Path, *,
                   count: int | None = None, min_confidence: float = 0.0) -> Suggestions:
    import imgcls

    folder, output = Path(folder), Path(output)
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder of images")
    if not 0 <= min_confidence <= 1:
        raise UserError(f"--min-confidence must be in [0, 1]; got {min_confidence}")
    if count is not None and count < 1:
        raise UserError(f"-n must be at least 1; got {count}")
    paths = sorted(path for path in folder.rglob("*") if path.is_file()
                   and not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS)
    if not paths:
        raise UserError(f"{folder} holds no images ({' '.join(sorted(IMAGE_EXTENSIONS))})")
    predictor = imgcls.load(model)
    guesses, unreadable = [], []
    for start in range(0, len(paths), CHUNK):
        for path, prediction in zip(paths[start:start + CHUNK],
                                    predictor.predict(paths[start:start + CHUNK], topk=2),
                                    strict=True):
            if prediction.error:
                unreadable.append((str(path), prediction.error))
                continue
            scores = [row["score"] for row in prediction.topk] + [0.0]
            guesses.append(Guess(path, prediction.label, scores[0], scores[0] - scores[1]))
    guesses.sort(key=lambda guess: (guess.confidence, guess.margin, str(guess.path)))
    confident = [guess for guess in guesses if guess.confidence >= min_confidence]
    kept = confident[:count] if count is not None else confident
    _write(output, kept)
    return Suggestions(output, kept, len(guesses) - len(confident), unreadable)


def _write(output: Path, guesses: list[Guess]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["path", "label", "confidence", "margin"])
    for guess in guesses:
        writer.writerow(safe_row([_relative(guess.path, output.parent), guess.label,
                                  f"{guess.confidence:.4f}", f"{guess.margin:.4f}"]))
    output.parent.mkdir(parents=True, exist_ok=True)
    write_text(output, buffer.getvalue())


def _relative(path: Path, base: Path) -> str:
    try:
        return Path(os.path.relpath(path.resolve(), base.resolve())).as_posix()
    except ValueError:  # another drive (Windows): the absolute path
        return path.resolve().as_posix()
