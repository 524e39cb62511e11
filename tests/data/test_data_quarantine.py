"""Quarantine moves bad files out (never deleting, never overwriting); restore moves them
back byte for byte."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

from imgcls.data.doctor import scan
from imgcls.data.quarantine import MANIFEST_NAME, quarantine, restore
from imgcls.errors import UserError

from badfolder import (
    BAD_UNDECODABLE_NAME,
    BOMB_LIMIT,
    ERROR_FILES,
    run_data_cli,
    tree_digest,
    write_bad_folder,
)


@pytest.fixture(autouse=True)
def small_bomb_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", BOMB_LIMIT)


@pytest.fixture
def bad_root(tmp_path: Path) -> Path:
    return write_bad_folder(tmp_path / "bad")


def _bad_files(root: Path) -> list[bytes]:
    """Relative paths (bytes) of the files with errors."""
    return sorted([os.fsencode(name) for name in ERROR_FILES]
                  + [os.path.join(b"dogs", BAD_UNDECODABLE_NAME)])


def test_round_trip_is_byte_identical(bad_root: Path, tmp_path: Path) -> None:
    before = tree_digest(bad_root)
    target = tmp_path / "quarantine"
    manifest = quarantine(scan(bad_root), bad_root, target)

    assert manifest == target / MANIFEST_NAME
    moved = tree_digest(target)
    del moved[os.fsencode(MANIFEST_NAME)]
    assert sorted(moved) == _bad_files(bad_root)  # same relative paths, under the target
    assert {path: before[path] for path in moved} == moved  # same bytes
    after_move = tree_digest(bad_root)
    assert set(after_move) == set(before) - set(moved)  # moved, nothing else touched
    assert scan(bad_root).count("error") == 1  # only the empty class folder is left

    entries = json.loads(manifest.read_text())["entries"]
    assert sorted(os.fsencode(entry["quarantined"]) for entry in entries) == sorted(moved)
    assert {entry["sha256"] for entry in entries} == set(moved.values())
    assert any(entry["reason"].startswith("truncated") for entry in entries)

    assert restore(manifest) == len(moved)
    assert tree_digest(bad_root) == before
    assert not manifest.exists()
    assert list(target.iterdir()) == []  # the folders quarantine made are gone too


def test_restore_refuses_to_overwrite(bad_root: Path, tmp_path: Path) -> None:
    before = tree_digest(bad_root)
    manifest = quarantine(scan(bad_root), bad_root, tmp_path / "q")
    newcomer = bad_root / "cats" / "zero.png"
    newcomer.write_bytes(b"a new file the user put here")

    with pytest.raises(UserError, match="zero.png exists again"):
        restore(manifest)
    assert newcomer.read_bytes() == b"a new file the user put here"
    [kept] = json.loads(manifest.read_text())["entries"]  # the others are back
    assert kept["quarantined"] == "cats/zero.png"

    newcomer.unlink()
    assert restore(manifest) == 1
    assert tree_digest(bad_root) == before


def test_restore_refuses_a_changed_file(bad_root: Path, tmp_path: Path) -> None:
    manifest = quarantine(scan(bad_root), bad_root, tmp_path / "q")
    (tmp_path / "q" / "cats" / "text.jpg").write_bytes(b"edited in quarantine")
    with pytest.raises(UserError, match="sha256"):
        restore(manifest)
    assert not (bad_root / "cats" / "text.jpg").exists()


def test_quarantine_never_overwrites(bad_root: Path, tmp_path: Path) -> None:
    target = tmp_path / "q"
    (target / "cats").mkdir(parents=True)
    (target / "cats" / "text.jpg").write_bytes(b"already here")
    before = tree_digest(bad_root)
    with pytest.raises(UserError, match="already exists"):
        quarantine(scan(bad_root), bad_root, target)
    assert tree_digest(bad_root) == before  # refused before moving anything
    assert (target / "cats" / "text.jpg").read_bytes() == b"already here"


def test_quarantine_inside_the_data_is_refused(bad_root: Path) -> None:
    with pytest.raises(UserError, match="inside the data"):
        quarantine(scan(bad_root), bad_root, bad_root / "quarantine")
    manifest = quarantine(scan(bad_root), bad_root, bad_root / ".quarantine")  # hidden: fine
    assert restore(manifest) == len(_bad_files(bad_root))


def test_interrupted_quarantine_restores(bad_root: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The manifest is written first: a crash after some moves loses track of nothing."""
    import imgcls.data.quarantine as module

    before = tree_digest(bad_root)
    real_move, calls = module._move_without_overwrite, []

    def move_twice_then_fail(source: Path, destination: Path) -> None:
        calls.append(source)
        if len(calls) > 2:
            raise OSError("disk full")
        real_move(source, destination)

    monkeypatch.setattr(module, "_move_without_overwrite", move_twice_then_fail)
    with pytest.raises(OSError, match="disk full"):
        quarantine(scan(bad_root), bad_root, tmp_path / "q")
    assert len(calls) == 3  # two files moved, the third move failed
    monkeypatch.setattr(module, "_move_without_overwrite", real_move)
    assert restore(tmp_path / "q" / MANIFEST_NAME) == 2
    assert tree_digest(bad_root) == before


def test_cli_quarantine_and_restore(bad_root: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture) -> None:
    before = tree_digest(bad_root)
    target = tmp_path / "q"
    assert run_data_cli(["data", "check", str(bad_root), "--quarantine", str(target)],
                   monkeypatch) == 1
    assert "6 file(s) with errors moved" in capsys.readouterr().out
    assert run_data_cli(["data", "restore", str(target / MANIFEST_NAME)], monkeypatch) == 0
    assert "restored 6 file(s)" in capsys.readouterr().out
    assert tree_digest(bad_root) == before
    assert run_data_cli(["data", "restore", str(target / MANIFEST_NAME)], monkeypatch) == 2
    assert "no quarantine manifest" in capsys.readouterr().err


def test_cli_refused_quarantine_comes_after_the_report(bad_root: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture) -> None:
    """The scan's report (and its JSON file) is kept when the quarantine is refused."""
    before = tree_digest(bad_root)
    report_file = tmp_path / "report.json"
    assert run_data_cli(["data", "check", str(bad_root), "--report", str(report_file),
                         "--quarantine", str(bad_root / "quarantine")], monkeypatch) == 2
    captured = capsys.readouterr()
    assert "bad\\xff.jpg" in captured.out
    assert "report written to" in captured.out.split("bad\\xff.jpg")[-1]  # after the tables
    assert report_file.is_file()
    error = captured.err.strip().splitlines()
    assert len(error) == 1 and "inside the data" in error[0]
    assert tree_digest(bad_root) == before


def test_a_version_1_manifest_still_restores(bad_root: Path, tmp_path: Path) -> None:
    """Manifests written before the root was recorded: it is read off their entries."""
    before = tree_digest(bad_root)
    manifest = quarantine(scan(bad_root), bad_root, tmp_path / "q")
    document = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({"version": 1, "entries": document["entries"]}))
    assert restore(manifest) == len(_bad_files(bad_root))
    assert tree_digest(bad_root) == before


def test_a_folder_holding_another_roots_quarantine_is_refused(bad_root: Path,
                                                               tmp_path: Path) -> None:
    quarantine(scan(bad_root), bad_root, tmp_path / "q")
    other = write_bad_folder(tmp_path / "other")
    with pytest.raises(UserError, match="holds the quarantine of"):
        quarantine(scan(other), other, tmp_path / "q")


def test_round_trip_without_hard_links(bad_root: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Another file system: the files are copied exclusively, then the originals unlinked."""
    import errno

    import imgcls.data.quarantine as module

    def no_link(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EXDEV, "cross-device link")

    monkeypatch.setattr(module.os, "link", no_link)
    before = tree_digest(bad_root)
    manifest = quarantine(scan(bad_root), bad_root, tmp_path / "q")
    assert restore(manifest) == len(_bad_files(bad_root))
    assert tree_digest(bad_root) == before
