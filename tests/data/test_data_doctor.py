"""The data doctor: every kind of bad or odd file named, duplicates, counts, the CLI."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from rich.console import Console

from imgcls.cli.data import add_commands as add_data_commands
from imgcls.cli.parsing import Parser
from imgcls.data.doctor import DoctorReport, scan
from imgcls.data.doctor_report import print_report
from imgcls.errors import UserError

from badfolder import (
    ACROSS_CLASSES,
    BAD_UNDECODABLE_NAME,
    BOMB_LIMIT,
    CLEAN_FILES,
    ERROR_FILES,
    EXPECTED_KINDS,
    GOOD_LATIN1_NAME,
    IGNORED_FILES,
    LEAKED_FILES,
    WITHIN_CLASS,
    noise,
    run_data_cli,
    tree_digest,
    write_bad_folder,
    write_split_folder,
)


@pytest.fixture(scope="module")
def bad_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_bad_folder(tmp_path_factory.mktemp("doctor") / "bad")


@pytest.fixture(scope="module")
def report(bad_root: Path) -> Iterator[DoctorReport]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Image, "MAX_IMAGE_PIXELS", BOMB_LIMIT)
        yield scan(bad_root, workers=2)


@pytest.fixture(autouse=True)
def small_bomb_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", BOMB_LIMIT)


def _kinds_of(report: DoctorReport) -> dict[str, set[str]]:
    kinds: dict[str, set[str]] = {}
    for finding in report.problems:
        kinds.setdefault(report.display_path(finding.path), set()).add(finding.kind)
    return kinds


@pytest.mark.parametrize(("relative", "kind"), sorted(EXPECTED_KINDS.items()))
def test_each_odd_file_is_named_with_its_kind(report: DoctorReport, relative: str,
                                              kind: str) -> None:
    assert kind in _kinds_of(report).get(relative, set())


def test_severities(report: DoctorReport) -> None:
    errors = {report.display_path(f.path) for f in report.problems if f.severity == "error"}
    undecodable = "dogs/" + os.fsdecode(BAD_UNDECODABLE_NAME).encode(
        "utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    assert errors == {*ERROR_FILES, undecodable, "empty"}
    by_kind = {f.kind: f.severity for f in report.problems}
    assert by_kind["wrong_extension"] == by_kind["too_small"] == by_kind["animated"] == "warning"
    for note in ("alpha", "palette", "cmyk", "high_bit_depth", "exif_rotation"):
        assert by_kind[note] == "note"


def test_reasons_say_what(report: DoctorReport) -> None:
    reason = {(report.display_path(f.path), f.kind): f.reason for f in report.problems}
    assert "PNG" in reason[("cats/png_named.jpg", "wrong_extension")]
    assert "4x4" in reason[("cats/tiny.png", "too_small")]
    assert "2 frames" in reason[("cats/animated.gif", "animated")]
    assert "orientation 6" in reason[("cats/rotated.jpg", "exif_rotation")]
    assert "I;16" in reason[("cats/deep.png", "high_bit_depth")]


def test_clean_files_need_no_comment(report: DoctorReport) -> None:
    kinds = _kinds_of(report)
    for relative in (*CLEAN_FILES, *WITHIN_CLASS, *ACROSS_CLASSES, "dogs/caf\\xe9.png"):
        assert relative not in kinds, relative
    assert "animated" not in kinds["dogs/transparent.gif"]  # one frame is not animated


def test_duplicates_within_and_across_classes(report: DoctorReport) -> None:
    groups = {tuple(sorted(report.display_path(p) for p in group.paths)): group.kinds
              for group in report.duplicates}
    assert groups == {tuple(sorted(WITHIN_CLASS)): ["within_class"],
                      tuple(sorted(ACROSS_CLASSES)): ["across_classes"]}


def test_leakage_across_splits(tmp_path: Path) -> None:
    split_report = scan(write_split_folder(tmp_path / "split"))
    assert split_report.layout == "folder-splits"
    [group] = split_report.duplicates
    assert sorted(split_report.display_path(p) for p in group.paths) == sorted(LEAKED_FILES)
    assert group.kinds == ["across_splits"]
    assert split_report.split_counts == {"train": {"cats": 3, "dogs": 2},
                                         "test": {"cats": 2, "dogs": 1}}
    assert not split_report.has_errors


def test_counts_sizes_and_ignored(report: DoctorReport) -> None:
    # cats: 17 image files, 5 broken; dogs: 8 files, 1 broken; the empty class counts 0.
    assert report.class_counts == {"cats": 12, "dogs": 7, "empty": 0, "mice": 2}
    assert report.imbalance_ratio == pytest.approx(12 / 2)
    assert report.files_checked == 17 + 8 + 2
    assert [report.display_path(p) for p in report.ignored] == list(IGNORED_FILES)
    sizes = report.sizes
    assert sizes.count == 21
    assert sizes.width == (4, 16, 24) and sizes.height == (4, 16, 16)
    assert sizes.buckets["<8"] == 1 and sizes.buckets["8-31"] == 20


def test_json_and_console_survive_non_utf8_names(report: DoctorReport) -> None:
    document = json.loads(json.dumps(report.to_json()))
    paths = {problem["path"] for problem in document["problems"]}
    assert "dogs/bad\\xff.jpg" in paths
    assert document["summary"]["errors"] == report.count("error") == 7
    stream = io.TextIOWrapper(io.BytesIO(), encoding="ascii", errors="strict")
    print_report(report, Console(file=stream, width=200, color_system=None))  # must not raise
    stream.flush()
    text = stream.buffer.getvalue().decode("ascii", "replace")
    assert "bad\\xff.jpg" in text and "truncated" in text


def test_csv_source_reports_missing_files(tmp_path: Path) -> None:
    noise(1).save(tmp_path / "a.png")
    noise(2).save(tmp_path / "b.png")
    (tmp_path / "list.csv").write_text("path,label\na.png,x\nb.png,y\ngone.png,y\n")
    csv_report = scan(tmp_path / "list.csv")
    assert csv_report.layout == "csv"
    assert [(csv_report.display_path(f.path), f.kind) for f in csv_report.problems] == [
        ("gone.png", "missing")]
    assert csv_report.class_counts == {"x": 1, "y": 1}


def test_layout_problems_are_findings(tmp_path: Path) -> None:
    (tmp_path / "only").mkdir()
    noise(1).save(tmp_path / "only" / "a.png")
    noise(2).save(tmp_path / "loose.png")
    kinds = {(f.kind, Path(f.path).name) for f in scan(tmp_path).problems}
    assert kinds == {("layout", tmp_path.name), ("loose_file", "loose.png")}


@pytest.mark.parametrize(("source", "message"), [
    ("nowhere", "is not an existing folder or CSV file"),
    ("digits", "is a built-in data set"),
    ("file.txt", "is a file but not a .csv"),
])
def test_unusable_source_is_a_user_error(tmp_path: Path, source: str, message: str) -> None:
    (tmp_path / "file.txt").write_text("x")
    path = source if source == "digits" else str(tmp_path / source)
    with pytest.raises(UserError, match=message):
        scan(path)


def test_cli_check_exit_codes_report_and_nothing_changed(
    bad_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    before = tree_digest(bad_root)
    report_file = tmp_path / "report.json"
    assert run_data_cli(["data", "check", str(bad_root), "--report", str(report_file)],
                   monkeypatch) == 1
    assert tree_digest(bad_root) == before  # check alone changes nothing
    document = json.loads(report_file.read_text())
    assert document["summary"]["errors"] == 7
    assert "bad\\xff.jpg" in capsys.readouterr().out

    assert run_data_cli(["data", "check", str(tmp_path / "nowhere")], monkeypatch) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "nowhere" in error[0]

    clean = write_split_folder(tmp_path / "clean")
    assert run_data_cli(["data", "check", str(clean)], monkeypatch) == 0


def test_cli_usage_mistake_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture) -> None:
    assert run_data_cli(["data"], monkeypatch) == 2
    assert run_data_cli(["data", "check"], monkeypatch) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("imgcls data") for line in lines)


def test_more_sub_verbs_can_register() -> None:
    parser = Parser(prog="imgcls")
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=Parser)
    data_verbs = add_data_commands(verbs)
    data_verbs.add_parser("extra").set_defaults(handler=lambda args: 0)
    args = parser.parse_args(["data", "extra"])
    assert args.handler(args) == 0


def test_latin1_name_is_checked(report: DoctorReport, bad_root: Path) -> None:
    name = os.fsdecode(GOOD_LATIN1_NAME)
    assert (bad_root / "dogs" / name).is_file()
    assert report.files_checked and report.class_counts["dogs"] == 7


@pytest.mark.slow
def test_training_on_the_bad_folder_completes_and_deletes_nothing(tmp_path: Path) -> None:
    import imgcls

    from badfolder import tree_digest, write_bad_folder

    root = write_bad_folder(tmp_path / "bad")
    before = tree_digest(root)
    run_dir = imgcls.train(data=str(root), model="lenet5", epochs=1, image_size=28,
                           batch_size=8, output=str(tmp_path / "run"), show_progress=False)
    assert (run_dir / "model.safetensors").is_file()
    skipped = (run_dir / "skipped.txt").read_text()
    assert skipped.count("\n") >= 5 and "empty/" in skipped
    assert tree_digest(root) == before
