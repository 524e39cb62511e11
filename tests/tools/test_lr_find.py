"""The learning-rate range test: the curve, the suggestion rule, the files, the CLI verb."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgcls.cli.parsing import Parser
from imgcls.cli.tools import add_commands as add_tool_commands
from imgcls.config import TrainConfig
from imgcls.errors import UserError
from imgcls.tools.lr_find import Curve, LrFindResult, find_lr, lr_schedule, suggest_lr

MIN_LR, MAX_LR, STEPS = 1e-7, 10.0, 60


@pytest.fixture(scope="module")
def digits_test(tmp_path_factory: pytest.TempPathFactory) -> tuple[LrFindResult, Path]:
    output = tmp_path_factory.mktemp("lr_find")
    # One thread: on the shared 2-core test machine two threads wait on each other.
    config = TrainConfig(data="digits", model="lenet5", batch_size=64, threads=1)
    return find_lr(config, min_lr=MIN_LR, max_lr=MAX_LR, steps=STEPS, output=output), output


@pytest.mark.slow
def test_curve_falls_then_diverges(digits_test: tuple[LrFindResult, Path]) -> None:
    result, _ = digits_test
    assert 10 < len(result.lrs) <= STEPS
    assert len(result.losses) == len(result.smoothed) == len(result.lrs)
    assert result.lrs == sorted(result.lrs) and result.lrs[0] == pytest.approx(MIN_LR)
    lowest = int(np.argmin(result.smoothed))
    # Falls well below the untrained loss (ln 10 = 2.30), then rises again past the minimum.
    assert result.smoothed[lowest] < 0.9 * result.smoothed[0]
    assert result.stopped_early or result.smoothed[-1] > 1.5 * result.smoothed[lowest]
    assert max(result.losses[lowest:]) > result.smoothed[lowest]


@pytest.mark.slow
def test_suggestion_is_a_sensible_rate(digits_test: tuple[LrFindResult, Path]) -> None:
    result, _ = digits_test
    assert MIN_LR <= result.suggested_lr <= MAX_LR
    assert 1e-4 <= result.suggested_lr <= 1
    assert result.rule == "steepest" and result.suggested_lr == result.steepest_lr
    assert result.suggested_lr <= result.minimum_lr


@pytest.mark.slow
def test_writes_plot_csv_and_json(digits_test: tuple[LrFindResult, Path]) -> None:
    result, output = digits_test
    assert result.plot_path == output / "lr_find.png"
    with Image.open(result.plot_path) as image:
        assert image.format == "PNG" and image.width > 300
    with open(output / "lr_find.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == len(result.lrs)
    assert float(rows[0]["lr"]) == pytest.approx(MIN_LR)
    summary = json.loads((output / "lr_find.json").read_text())
    assert summary["suggested_lr"] == result.suggested_lr and summary["rule"] == "steepest"
    assert summary["config"]["model"] == "lenet5"
    assert (output / "split.json").is_file()


def _synthetic(lrs: np.ndarray, centre: float) -> list[float]:
    """A loss that falls as a logistic in log10(lr), steepest exactly at `centre`, then
    climbs steeply two decades later."""
    x = np.log10(lrs)
    fall = 2.0 - 1.5 / (1 + np.exp(-3 * (x - np.log10(centre))))
    climb = np.where(x > np.log10(centre) + 2, 4 * (x - np.log10(centre) - 2) ** 2, 0.0)
    return (fall + climb).tolist()


def test_suggestion_rule_finds_the_steepest_point() -> None:
    lrs = lr_schedule(1e-6, 10.0, 141)  # 20 points per decade: 1e-3 is on the grid
    suggestion = suggest_lr(lrs.tolist(), _synthetic(lrs, centre=1e-3))
    assert suggestion.rule == "steepest"
    assert suggestion.lr == pytest.approx(1e-3)
    assert 1e-2 < suggestion.minimum_lr < 1e-0


def test_suggestion_falls_back_to_a_tenth_of_the_minimum() -> None:
    lrs = lr_schedule(1e-4, 1.0, 50).tolist()
    rising = [1.0 + lr for lr in lrs]  # never falls: the minimum is the first point
    suggestion = suggest_lr(lrs, rising)
    assert suggestion.rule == "minimum/10" and suggestion.steepest_lr is None
    assert suggestion.lr == pytest.approx(1e-4)  # a tenth, but not below the range


def test_smoothing_is_debiased() -> None:
    curve = Curve(beta=0.9)
    for step in range(5):
        curve.add(10.0**-step, 2.0)
    assert curve.smoothed == pytest.approx([2.0] * 5)  # a constant loss stays constant


def test_rejects_a_bad_range() -> None:
    with pytest.raises(UserError, match="min-lr"):
        find_lr(TrainConfig(), min_lr=1.0, max_lr=0.1)
    with pytest.raises(UserError, match="steps"):
        find_lr(TrainConfig(), steps=3)


def test_cli_parses_lr_find(tmp_path: Path) -> None:
    parser = Parser(prog="imgcls")
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=Parser)
    add_tool_commands(verbs)
    args = parser.parse_args(["lr-find", "--data", "digits", "--model", "lenet5",
                              "--steps", "40", "--max-lr", "1", "-b", "32",
                              "--optimizer", "momentum", "-o", str(tmp_path)])
    assert args.verb == "lr-find" and args.steps == 40 and args.max_lr == 1.0
    assert args.min_lr == 1e-7 and args.output_dir == str(tmp_path)
    assert (args.model, args.batch_size, args.optimizer) == ("lenet5", 32, "momentum")
    assert not hasattr(args, "epochs")  # the test's length is --steps
