"""`imgcls data labels` finds labels planted wrong in data the test makes, from out-of-fold
predictions and cleanlab; its files parse; a rerun keeps finished folds. `imgcls data suggest`
orders a model's guesses least certain first, in a CSV that --data reads."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import imgcls
from imgcls.data.sources import load_source
from imgcls.errors import UserError
from imgcls.tools.labels.folds import LabelsRequest
from imgcls.tools.labels.run import find_label_issues
from imgcls.tools.labels.suggest import suggest_labels

from badfolder import tree_digest
from imagefolder import write_folder

pytest.importorskip("cleanlab")
pytestmark = pytest.mark.slow

PLANTED = {"top/top_000.png": "bottom", "top/top_004.jpg": "centre",
           "bottom/bottom_002.png": "top", "bottom/bottom_009.jpg": "centre",
           "centre/centre_001.jpg": "top", "centre/centre_005.png": "bottom"}


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(data folder, planted relabel file, output folder) after one `data labels` run."""
    root = tmp_path_factory.mktemp("labels")
    data = write_folder(root / "data", per_class=40)
    noisy = root / "noisy.csv"
    noisy.write_text("path,label\n" + "".join(f"{item},{label}\n"
                                              for item, label in PLANTED.items()))
    before = tree_digest(data)
    find_label_issues(request(data, noisy, root / "out"), say=lambda line: None)
    assert tree_digest(data) == before  # the data is read, never written
    return data, noisy, root / "out"


def request(data: Path, noisy: Path, output: Path) -> LabelsRequest:
    return LabelsRequest(data=str(data), output=output, folds=3, epochs=60, model="lenet5",
                         image_size=32, channels=1, relabel=str(noisy), show_progress=False)


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as stream:
        return list(csv.DictReader(stream))


def test_planted_flips_are_found_and_the_fix_suggested(labelled) -> None:
    _, _, output = labelled
    table = rows(output / "label_issues.csv")
    assert list(table[0]) == ["item", "given", "suggested", "quality", "is_issue"]
    assert len(table) == 120 - 12  # the analysed items: train and val, not the test split
    flagged = {row["item"]: row for row in table if row["is_issue"] == "1"}
    analysed = {row["item"] for row in table}
    planted = {item for item in PLANTED if item in analysed}
    found = planted & set(flagged)
    assert len(found) >= 0.75 * len(planted)
    assert len(found) >= 0.6 * len(flagged)  # precision on easy data
    for item in found:  # the suggestion is the class the file really is in
        assert flagged[item]["suggested"] == item.split("/")[0]
        assert flagged[item]["given"] == PLANTED[item]
    qualities = [float(row["quality"]) for row in table]
    flags = [row["is_issue"] == "1" for row in table]
    assert flags == sorted(flags, reverse=True)  # flagged first ...
    assert qualities[:len(flagged)] == sorted(qualities[:len(flagged)])  # ... worst first
    assert all(0 <= quality <= 1 for quality in qualities)
    outliers = rows(output / "outliers.csv")
    assert len(outliers) == len(table) and list(outliers[0]) == ["item", "outlier_score"]
    scores = [float(row["outlier_score"]) for row in outliers]
    assert scores == sorted(scores) and all(0 <= score <= 1 for score in scores)
    relabel = rows(output / "relabel.csv")
    assert {row["path"]: row["label"] for row in relabel} == {
        item: row["suggested"] for item, row in flagged.items()}


def test_the_page_shows_the_flagged_images_and_the_noise_matrix(labelled) -> None:
    _, _, output = labelled
    page = (output / "label_issues.html").read_text()
    flagged = sum(row["is_issue"] == "1" for row in rows(output / "label_issues.csv"))
    assert page.count("data:image/png;base64,") == flagged
    assert "Estimated noise" in page and "top -&gt; bottom" not in page.split("<h2>")[0]
    assert "http://" not in page and "https://" not in page  # self-contained


def test_relabel_csv_trains_and_the_training_labels_change(labelled, tmp_path: Path) -> None:
    data, _, output = labelled
    run = imgcls.train(data=str(data), model="lenet5", epochs=1, image_size=32, channels=1,
                       relabel=str(output / "relabel.csv"), output=str(tmp_path / "run"),
                       show_progress=False)
    fixes = imgcls.load(run).metadata["data"]["fixes"]
    # relabel.csv names the flagged items with the classes their folders say: against the
    # files on disk (not the planted noise) only the false alarms change a label
    flagged = [row for row in rows(output / "label_issues.csv") if row["is_issue"] == "1"]
    false_alarms = sum(row["suggested"] != row["item"].split("/")[0] for row in flagged)
    assert fixes["relabel"]["relabeled"] == false_alarms


def test_a_rerun_keeps_finished_folds(labelled, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    data, noisy, output = labelled
    copy = tmp_path / "out"
    shutil.copytree(output, copy)
    (copy / "folds" / "fold-2" / "oof.npz").unlink()  # as if Ctrl-C stopped it there
    trained: list[str] = []
    real_train = imgcls.train

    def counting_train(**settings):
        trained.append(settings["split_file"])
        return real_train(**settings)

    monkeypatch.setattr(imgcls, "train", counting_train)
    lines: list[str] = []
    result = find_label_issues(request(data, noisy, copy), say=lines.append)
    assert len(trained) == 1 and "fold-2" in trained[0]
    assert sum("kept from an earlier run" in line for line in lines) == 2
    assert len(result.findings.given) == 108


def test_too_few_images_per_class_for_the_folds_is_a_clear_error(tmp_path: Path) -> None:
    data = write_folder(tmp_path / "data", per_class=3)
    with pytest.raises(UserError, match="fewer than --folds 5"):
        find_label_issues(LabelsRequest(data=str(data), output=tmp_path / "out", folds=5,
                                        epochs=1, model="lenet5", image_size=32, channels=1,
                                        show_progress=False), say=lambda line: None)


def test_suggest_orders_guesses_least_certain_first(digits_run: Path, tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    folder = tmp_path / "unlabeled"
    (folder / "more").mkdir(parents=True)
    digits = load_digits().images
    for index in range(30):
        target = folder / ("more" if index % 3 else "") / f"image_{index:02d}.png"
        Image.fromarray((digits[index] * 16).astype(np.uint8)).resize((32, 32)).save(target)
    (folder / "broken.png").write_bytes(b"not an image")
    output = tmp_path / "lists" / "suggested.csv"
    result = suggest_labels(folder, digits_run, output)
    assert [path for path, _ in result.unreadable] == [str(folder / "broken.png")]
    table = rows(output)
    assert len(table) == 30 and list(table[0]) == ["path", "label", "confidence", "margin"]
    confidences = [float(row["confidence"]) for row in table]
    assert confidences == sorted(confidences)
    image_set = load_source(str(output), channels=1, image_size=32, data_dir=None)
    assert len(image_set) == 30  # --data reads the CSV: its paths resolve from its folder
    few = suggest_labels(folder, digits_run, output.parent / "few.csv", count=5)
    assert [row["path"] for row in rows(output.parent / "few.csv")] == [
        row["path"] for row in table[:5]] and len(few.kept) == 5
    sure = suggest_labels(folder, digits_run, tmp_path / "sure.csv", min_confidence=0.9)
    assert all(guess.confidence >= 0.9 for guess in sure.kept)
    # Counted on the guesses' own confidences: the CSV's are rounded, and a guess at
    # 0.89999 reads 0.9000 there.
    assert sure.below_confidence == sum(guess.confidence < 0.9 for guess in result.kept)
    with pytest.raises(UserError, match="--min-confidence must be in"):
        suggest_labels(folder, digits_run, tmp_path / "x.csv", min_confidence=1.5)


def test_init_from_trains_a_head_on_frozen_features_per_fold(digits_run: Path,
                                                             tmp_path: Path) -> None:
    result = find_label_issues(LabelsRequest(
        data="digits", output=tmp_path / "out", folds=2, epochs=2,
        init_from=str(digits_run / "model.safetensors"), show_progress=False),
        say=lambda line: None)
    for fold in (1, 2):
        config = (tmp_path / "out" / "folds" / f"fold-{fold}" / "run" / "config.yaml").read_text()
        assert "freeze_backbone: true" in config and "init_from:" in config
    names = [row["item"] for row in rows(result.issues_csv)]
    assert len(names) == len(result.findings.given) and all(n.startswith("#") for n in names)
