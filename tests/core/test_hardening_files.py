"""What imgcls does to the file system, against crafted input and careless use.

A crafted quarantine manifest moves nothing from outside its folder and overwrites
nothing; --output never mixes a run into a user's folder; last.pt is written durably and a
damaged or foreign one is a one-line error; files get the umask's mode; CSV cells are
not spreadsheet formulas; the decoded cache tells two data roots apart.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

import imgcls
from imgcls.cli import main
from imgcls.errors import UserError

from badfolder import noise, run_data_cli


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _snapshot(top: Path) -> dict[str, bytes | str]:
    """Every file and link below `top`, links not followed: {relative path: bytes, or
    'link -> target'}."""
    found: dict[str, bytes | str] = {}
    for current, folders, files in os.walk(top):
        for name in folders + files:
            path = Path(current, name)
            relative = path.relative_to(top).as_posix()
            if path.is_symlink():
                found[relative] = f"link -> {os.readlink(path)}"
            elif path.is_file():
                found[relative] = path.read_bytes()
    return found


# --- data restore and a crafted manifest --------------------------------------------------

@pytest.fixture
def crafted(tmp_path: Path) -> dict[str, Path]:
    """A data root, a quarantine folder with a crafted manifest, and files outside both."""
    root, quarantine, outside = tmp_path / "data", tmp_path / "q", tmp_path / "outside"
    for folder in (root / "cats", quarantine / "cats", outside):
        folder.mkdir(parents=True)
    (outside / "secret.txt").write_bytes(b"the user's secret")
    (root / "cats" / "taken.png").write_bytes(b"the user's own image")
    for name in ("good.png", "escape.png", "abs.png", "nohash.png", "missingkey.png",
                 "taken.png", "into-link.png"):
        (quarantine / "cats" / name).write_bytes(f"quarantined {name}".encode())
    (quarantine / "link").symlink_to(outside, target_is_directory=True)  # folder link out
    (quarantine / "cats" / "leaf.png").symlink_to(outside / "secret.txt")  # file link out
    (root / "dogs").symlink_to(outside, target_is_directory=True)  # a link out of the root

    def entry(quarantined: str, original: Path | str, data: bytes | None) -> dict:
        return {"original": str(original), "quarantined": quarantined, "reason": "crafted",
                "sha256": None if data is None else _sha256(data)}

    secret = b"the user's secret"
    entries = [
        entry("cats/good.png", root / "cats" / "good.png", b"quarantined good.png"),
        entry(str(outside / "secret.txt"), root / "cats" / "secret.txt", secret),  # absolute
        entry("../outside/secret.txt", root / "cats" / "secret2.txt", secret),  # ..
        entry("link/secret.txt", root / "link" / "secret.txt", secret),  # folder link out
        entry("cats/leaf.png", root / "cats" / "leaf.png", secret),  # a link itself
        entry("cats/escape.png", f"{root}/../outside/escape.png",  # .. in the original
              b"quarantined escape.png"),
        entry("cats/abs.png", outside / "abs.png", b"quarantined abs.png"),  # outside the root
        entry("dogs/into-link.png", root / "dogs" / "into-link.png",  # root link leads out
              b"quarantined into-link.png"),
        entry("cats/nohash.png", root / "cats" / "nohash.png", None),  # null hash
        entry("cats/taken.png", root / "cats" / "taken.png", b"quarantined taken.png"),
    ]
    missing_key = entry("cats/missingkey.png", root / "cats" / "missingkey.png", b"x")
    del missing_key["sha256"]
    manifest = {"version": 2, "root": str(root), "entries": [*entries, missing_key]}
    (quarantine / "manifest.json").write_text(json.dumps(manifest))
    # The destination link's file is in quarantine under its own name, like the others.
    (quarantine / "dogs").mkdir()
    (quarantine / "cats" / "into-link.png").rename(quarantine / "dogs" / "into-link.png")
    return {"root": root, "quarantine": quarantine, "outside": outside, "top": tmp_path}


def test_crafted_manifest_moves_only_the_honest_entry(crafted: dict[str, Path]) -> None:
    from imgcls.data.quarantine import RestoreRefused, restore

    top, quarantine = crafted["top"], crafted["quarantine"]
    before = _snapshot(top)

    with pytest.raises(RestoreRefused) as refused:
        restore(quarantine / "manifest.json")

    after = _snapshot(top)
    moved = before.pop("q/cats/good.png")
    assert after.pop("data/cats/good.png") == moved  # the one honest entry went back
    manifest_before, manifest_after = before.pop("q/manifest.json"), after.pop("q/manifest.json")
    assert after == before  # every other file: same bytes, same place; nothing new, nothing gone
    kept = json.loads(manifest_after)["entries"]
    assert len(kept) == len(json.loads(manifest_before)["entries"]) - 1
    refusals = refused.value.refusals
    assert len(refusals) == 10 and all("\n" not in line for line in refusals)
    for name, reason in [("outside/secret.txt", "not a relative path"),
                         ("../outside/secret.txt", "not a relative path"),
                         ("link/secret.txt", "outside the quarantine folder"),
                         ("leaf.png", "symbolic link"),
                         ("escape.png", "is not"),
                         ("abs.png", "is not"),
                         ("into-link.png", "outside the data root"),
                         ("nohash.png", "no sha256"),
                         ("missingkey.png", "no sha256"),
                         ("taken.png", "exists again")]:
        assert any(name in line and reason in line for line in refusals), (name, refusals)


def test_cli_restore_names_each_refused_entry(crafted: dict[str, Path],
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture) -> None:
    manifest = crafted["quarantine"] / "manifest.json"
    assert run_data_cli(["data", "restore", str(manifest)], monkeypatch) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert sum(line.startswith("not restored: ") for line in lines) == 10
    assert lines[-1].startswith("imgcls: error: restored 1 file(s); 10 left in quarantine")


def test_quarantine_records_the_root_and_round_trips(tmp_path: Path) -> None:
    from imgcls.data.doctor import scan
    from imgcls.data.quarantine import quarantine, restore

    root = tmp_path / "data"
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for seed in range(2):
            noise(seed + (10 if label == "b" else 0)).save(root / label / f"{seed}.png")
    (root / "a" / "broken.png").write_bytes(b"not an image")
    before = _snapshot(root)
    manifest = quarantine(scan(root), root, tmp_path / "q")
    assert json.loads(manifest.read_text())["root"] == str(root.resolve())
    assert restore(manifest) == 1
    assert _snapshot(root) == before


# --- train --output ----------------------------------------------------------------------

TINY = {"data": "digits", "model": "lenet5", "epochs": 1, "batch_size": 64,
        "precision": "fp32", "show_progress": False}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One epoch of lenet5 on digits, trained under umask 022."""
    previous = os.umask(0o022)
    try:
        yield imgcls.train(**TINY, output=str(tmp_path_factory.mktemp("runs") / "tiny"))
    finally:
        os.umask(previous)


def test_output_into_a_users_folder_is_refused(tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_bytes(b"my notes")
    code = main(["train", "--epochs", "1", "--no-progress", "--data", "digits",
                 "--model", "lenet5", "--output", str(folder), "--overwrite"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert str(folder) in err[0] and "not empty" in err[0]
    assert _snapshot(folder) == {"notes.txt": b"my notes"}  # untouched, nothing added
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # nothing moved aside


@pytest.mark.slow
def test_output_into_an_existing_run_needs_overwrite(tiny_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    before = _snapshot(run_dir)
    with pytest.raises(UserError, match="--resume"):
        imgcls.train(**TINY, output=str(run_dir))
    assert _snapshot(run_dir) == before


@pytest.mark.slow
def test_overwrite_moves_the_old_run_aside(tiny_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    (run_dir / "my-notes.txt").write_bytes(b"kept with the old run")
    before = _snapshot(run_dir)

    imgcls.train(**TINY, output=str(run_dir), overwrite=True)

    [aside] = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    assert _snapshot(aside) == before  # the old run, whole and unchanged
    assert not (run_dir / "my-notes.txt").exists()
    history = (run_dir / "history.jsonl").read_text().splitlines()
    assert len(history) == 1 and (run_dir / "model.safetensors").is_file()


def test_an_empty_folder_is_a_fine_output(tmp_path: Path) -> None:
    from imgcls.config import TrainConfig
    from imgcls.modelfile.rundir import RUN_MARKER, is_run_dir, prepare_run_dir

    (tmp_path / "empty").mkdir()
    run_dir = prepare_run_dir(TrainConfig(output=str(tmp_path / "empty")), overwrite=False)
    assert (run_dir / RUN_MARKER).is_file() and is_run_dir(run_dir)


# --- last.pt -----------------------------------------------------------------------------

@pytest.mark.slow
def test_truncated_last_pt_is_a_one_line_error(tiny_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    state = run_dir / "last.pt"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    with pytest.raises(UserError) as error:
        imgcls.resume(run_dir, epochs=2, show_progress=False)
    message = str(error.value)
    assert "\n" not in message and str(state) in message and "truncated" in message


@pytest.mark.slow
def test_last_pt_of_another_config_is_refused(tiny_run: Path, tmp_path: Path) -> None:
    other = imgcls.train(**{**TINY, "batch_size": 32}, output=str(tmp_path / "other"))
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    shutil.copy(other / "last.pt", run_dir / "last.pt")
    with pytest.raises(UserError) as error:
        imgcls.resume(run_dir, epochs=2, show_progress=False)
    message = str(error.value)
    assert "\n" not in message and str(run_dir / "last.pt") in message
    assert "batch_size: 32 in last.pt, 64 now" in message


@pytest.mark.slow
def test_a_config_yaml_edited_since_is_refused(tiny_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["weight_decay"] = 0.1
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(UserError, match="weight_decay"):
        imgcls.resume(run_dir, epochs=2, show_progress=False)


@pytest.mark.slow
def test_resume_still_continues(tiny_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    imgcls.resume(run_dir, epochs=2, show_progress=False)
    assert len((run_dir / "history.jsonl").read_text().splitlines()) == 2


@pytest.mark.slow
def test_a_last_pt_without_fingerprint_still_resumes(tiny_run: Path, tmp_path: Path) -> None:
    """Checkpoints written before they carried the settings' hash: nothing to compare."""
    from imgcls.training.state import FINGERPRINT_KEY

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    state = torch.load(run_dir / "last.pt", weights_only=True)
    del state[FINGERPRINT_KEY]
    torch.save(state, run_dir / "last.pt")
    imgcls.resume(run_dir, epochs=2, show_progress=False)
    assert len((run_dir / "history.jsonl").read_text().splitlines()) == 2


def test_a_failed_save_keeps_the_previous_last_pt(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from imgcls.training.state import save_state

    path = tmp_path / "last.pt"
    save_state(path, {"step": torch.tensor(1)})
    before = path.read_bytes()

    def half_then_fail(state: object, target: Path) -> None:
        Path(target).write_bytes(before[: len(before) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", half_then_fail)
    with pytest.raises(OSError):
        save_state(path, {"step": torch.tensor(2)})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left


def test_checkpoint_syncs_the_file_and_the_folder(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import imgcls.utils.files

    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(handle: int) -> None:
        synced.append("folder" if stat.S_ISDIR(os.fstat(handle).st_mode) else "file")
        real_fsync(handle)

    monkeypatch.setattr(imgcls.utils.files.os, "fsync", recording_fsync)
    from imgcls.training.state import save_state

    save_state(tmp_path / "last.pt", {"step": torch.tensor(1)})
    assert synced == ["file", "folder"]


# --- file modes --------------------------------------------------------------------------

@pytest.mark.slow
def test_run_files_get_the_umasks_mode(tiny_run: Path) -> None:
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tiny_run.iterdir() if p.is_file()}
    assert modes["model.safetensors"] == 0o644 and modes["last.pt"] == 0o644
    assert set(modes.values()) == {0o644}, modes


@pytest.mark.parametrize("from_proc", [True, False])
def test_written_files_follow_another_umask(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            from_proc: bool) -> None:
    import imgcls.utils.files
    from imgcls.utils.files import write_text

    if not from_proc:  # the portable fallback
        monkeypatch.setattr(imgcls.utils.files, "_umask_from_proc", lambda: None)
    previous = os.umask(0o027)
    try:
        write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o640


# --- CSV ---------------------------------------------------------------------------------

def test_formula_cells_are_escaped_numbers_are_not() -> None:
    from imgcls.evaluation.mistakes import Mistake, mistakes_csv

    text = mistakes_csv([Mistake(0, "@SUM(A1).png", "=cmd()", "-2+3", 0.5, 1.25),
                         Mistake(1, "ok.png", "cat", "dog", 0.75, 0.5)])
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[1] == ["'@SUM(A1).png", "'=cmd()", "'-2+3", "0.500000", "1.250000"]
    assert rows[2] == ["ok.png", "cat", "dog", "0.750000", "0.500000"]


def test_safe_cell_keeps_numbers() -> None:
    from imgcls.utils.csv_safe import safe_cell

    for number in ("-0.5", "+1e-3", "-inf", "3", -0.5, 2):
        assert safe_cell(number) == number
    for text, escaped in (("=1+1", "'=1+1"), ("+x", "'+x"), ("-x", "'-x"),
                          ("\tx", "'\tx"), ("\rx", "'\rx"), ("@x", "'@x")):
        assert safe_cell(text) == escaped


def test_predictions_csv_escapes_a_class_name() -> None:
    from imgcls.cli.train import _format_predictions

    text = _format_predictions([{"input": "-x.png", "label": "=cmd()", "score": 0.5,
                                 "topk": [{"label": "=cmd()", "score": 0.5}]}], "csv")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[1] == ["'-x.png", "'=cmd()", "0.500000", "'=cmd():0.500000"]


# --- decoded cache -----------------------------------------------------------------------

def test_cache_key_differs_for_two_roots(tmp_path: Path) -> None:
    from imgcls.data.cache import source_key
    from imgcls.data.file_index import index_folder

    first = tmp_path / "first"
    for label in ("a", "b"):
        (first / label).mkdir(parents=True)
        Image.new("RGB", (8, 8), (10, 20, 30)).save(first / label / "1.png")
    second = tmp_path / "second"
    shutil.copytree(first, second)  # same names, sizes and modification times
    first_index, second_index = index_folder(first), index_folder(second)
    assert first_index.item_ids == second_index.item_ids
    assert source_key(first_index, 3, 8) != source_key(second_index, 3, 8)
    assert source_key(first_index, 3, 8) == source_key(index_folder(first), 3, 8)
