"""Model comparison: one split, one budget, a ranked leaderboard, failures listed."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from PIL import Image
from rich.console import Console

import imgcls.tools.compare
from imgcls.cli.parsing import Parser
from imgcls.cli.tools import add_commands as add_tool_commands
from imgcls.config import TrainConfig
from imgcls.errors import UserError
from imgcls.tools.compare import Leaderboard, Row, compare, rank, write_leaderboard

# Two cheap networks at a quarter of their width (0.2 and 21 MFLOPs at 1x32x32), two epochs;
# "alexnet" is made to fail below. One thread: on the shared 2-core test machine two
# threads wait on each other.
MODELS = ["lenet5", "vgg11_bn", "alexnet"]
CONFIG = TrainConfig(data="digits", epochs=2, batch_size=64, width=0.25, threads=1,
                     precision="fp32")


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Leaderboard:
    real_train = imgcls.tools.compare.train

    def train_or_fail(config: TrainConfig, **options: object) -> Path:
        if config.model == "alexnet":  # as create_model does for a too-small image
            raise UserError("model alexnet needs images of at least 64 px; got 32")
        return real_train(config, **options)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(imgcls.tools.compare, "train", train_or_fail)
        output = tmp_path_factory.mktemp("compare")
        return compare(CONFIG, MODELS, output, console=Console(quiet=True))


@pytest.mark.slow
def test_every_model_trained_on_the_same_split(board: Leaderboard) -> None:
    shared = (board.output / "split.json").read_text()
    for name in ("lenet5", "vgg11_bn"):
        assert (board.output / name / "split.json").read_text() == shared
        assert (board.output / name / "model.safetensors").is_file()


@pytest.mark.slow
def test_rows_are_ranked_and_the_best_is_named(board: Leaderboard) -> None:
    finished = [row for row in board.rows if row.status == "ok"]
    assert {row.model for row in finished} == {"lenet5", "vgg11_bn"}
    assert [row.accuracy for row in finished] == sorted(
        (row.accuracy for row in finished), reverse=True)
    assert board.best is finished[0]
    for row in finished:
        assert 0 <= row.accuracy <= 1 and 0 <= row.f1_macro <= 1
        assert row.parameters > 0 and row.mflops > 0
        assert row.train_seconds > 0 and row.images_per_s > 0
    lenet = next(row for row in finished if row.model == "lenet5")
    assert lenet.mflops < 1  # a quarter-width LeNet-5 at 32 px: 0.2 MFLOPs


@pytest.mark.slow
def test_a_failed_model_is_listed_with_its_reason(board: Leaderboard) -> None:
    failed = board.rows[-1]
    assert (failed.model, failed.status) == ("alexnet", "failed")
    assert "at least 64 px" in failed.error and failed.accuracy is None


@pytest.mark.slow
def test_leaderboard_files(board: Leaderboard) -> None:
    with open(board.output / "leaderboard.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [row["model"] for row in rows] == [row.model for row in board.rows]
    assert [row["rank"] for row in rows] == ["1", "2", ""]
    assert float(rows[0]["accuracy"]) == pytest.approx(board.best.accuracy)
    assert rows[2]["status"] == "failed" and "64 px" in rows[2]["error"]
    markdown = (board.output / "leaderboard.md").read_text()
    table = [line for line in markdown.splitlines() if line.startswith("|")]
    assert len(table) == 2 + len(MODELS)  # heading, rule, one line per model
    assert f"| 1 | {board.best.model} |" in table[2]
    assert f"best: {board.best.model} (accuracy" in markdown
    with Image.open(board.output / "leaderboard.png") as image:
        assert image.format == "PNG"


def _row(model: str, accuracy: float | None, f1: float | None, status: str = "ok") -> Row:
    return Row(model, status, accuracy=accuracy, f1_macro=f1, parameters=1, mflops=1.0,
               train_seconds=1.0, images_per_s=1.0)


def test_ranking_on_fabricated_rows(tmp_path: Path) -> None:
    rows = [
        _row("broken", None, None, status="failed"),
        _row("b", 0.90, 0.85),
        _row("a", 0.95, 0.90),
        _row("c", 0.90, 0.88),  # ties b on accuracy, wins on macro-F1
        _row("also_broken", None, None, status="failed"),
    ]
    ranked = rank(rows)
    assert [row.model for row in ranked] == ["a", "c", "b", "broken", "also_broken"]
    board = Leaderboard(ranked, ranked[0], tmp_path)
    write_leaderboard(board)
    assert "best: a (accuracy 0.9500" in (tmp_path / "leaderboard.md").read_text()


def test_unknown_or_repeated_models_are_refused_before_training(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="did you mean 'resnet18'"):
        compare(CONFIG, ["lenet5", "resnt18"], tmp_path)
    with pytest.raises(UserError, match="more than once"):
        compare(CONFIG, ["lenet5", "lenet5"], tmp_path)
    assert not list(tmp_path.iterdir())  # nothing was trained or written


def test_cli_parses_compare(tmp_path: Path) -> None:
    parser = Parser(prog="imgcls")
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=Parser)
    add_tool_commands(verbs)
    args = parser.parse_args(["compare", "--data", "digits", "--models", "lenet5,resnet18",
                              "--epochs", "3", "--lr", "0.01", "--seed", "2", "-o",
                              str(tmp_path)])
    assert args.verb == "compare" and args.models == "lenet5,resnet18"
    assert (args.epochs, args.lr, args.seed) == (3, 0.01, 2)
    assert args.output_dir == str(tmp_path) and not hasattr(args, "model")
