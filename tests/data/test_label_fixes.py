"""`imgcls train --relabel / --exclude` (imgcls.data.label_fixes): the training labels change,
the files on disk do not, the run records what it applied, and every bad row of a fixes file
is a one-line error naming the file, its line and the problem."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

import imgcls
from imgcls.data.label_fixes import item_name, read_fixes
from imgcls.data.sources import load_source
from imgcls.errors import UserError

from badfolder import tree_digest
from imagefolder import write_folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_folder(tmp_path_factory.mktemp("fixes") / "data", per_class=12)


@pytest.fixture(scope="module")
def folder_set(folder: Path):
    return load_source(str(folder), channels=1, image_size=32, data_dir=None)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_relabel_and_exclude_name_folder_items_by_relative_path(folder_set, tmp_path: Path):
    relabel = write(tmp_path / "fix.csv", "path,label\ntop/top_000.png,bottom\n"
                                          "bottom/bottom_001.jpg,bottom\n")  # unchanged
    exclude = write(tmp_path / "out.txt", "centre/centre_002.png\n")
    fixes = read_fixes(folder_set, relabel=str(relabel), exclude=str(exclude))
    index = folder_set.item_ids.index
    bottom = folder_set.class_names.index("bottom")
    assert fixes.relabel == {index("top/top_000.png"): bottom}  # only what changes
    assert fixes.exclude == {index("centre/centre_002.png")}
    assert fixes.record["relabel"]["relabeled"] == 1 and fixes.record["exclude"]["excluded"] == 1
    labels = fixes.labels(folder_set)
    assert int(labels[index("top/top_000.png")]) == bottom
    assert int(folder_set.labels[index("top/top_000.png")]) != bottom  # not in place
    kept = fixes.kept(np.arange(len(folder_set)))
    assert index("centre/centre_002.png") not in kept and len(kept) == len(folder_set) - 1


def test_built_in_items_are_hash_indices_and_their_own_ids() -> None:
    assert item_name("digits/17", builtin=True) == "#17"
    assert item_name("fashion-mnist/train/123", builtin=True) == "#123"
    assert item_name("fashion-mnist/test/5", builtin=True) == "fashion-mnist/test/5"
    assert item_name("cats/a.png", builtin=False) == "cats/a.png"


def test_a_built_in_set_takes_hash_indices_and_its_own_ids(tmp_path: Path) -> None:
    digits = load_source("digits", channels=None, image_size=None, data_dir=None)
    relabel = write(tmp_path / "fix.csv", "path,label\n#3,9\ndigits/4,9\n")
    fixes = read_fixes(digits, relabel=str(relabel), exclude=None)
    assert set(fixes.relabel) == {3, 4} and set(fixes.relabel.values()) == {9}
    again = write(tmp_path / "again.csv", "path,label\n#3,9\ndigits/3,8\n")
    with pytest.raises(UserError, match="line 3: item 'digits/3' is named again"):
        read_fixes(digits, relabel=str(again), exclude=None)


def test_label_issues_csv_is_an_exclude_file_taking_its_flagged_rows(folder_set,
                                                                      tmp_path: Path):
    issues = write(tmp_path / "label_issues.csv",
                   "item,given,suggested,quality,is_issue\n"
                   "top/top_000.png,top,bottom,0.01,1\n"
                   "top/top_001.jpg,top,top,0.90,0\n"
                   "centre/centre_004.jpg,centre,top,0.02,1\n")
    fixes = read_fixes(folder_set, relabel=None, exclude=str(issues))
    assert {folder_set.item_ids[i] for i in fixes.exclude} == {"top/top_000.png",
                                                               "centre/centre_004.jpg"}
    # ... and a relabel file too, through its `suggested` column
    fixes = read_fixes(folder_set, relabel=str(issues), exclude=None)
    assert {folder_set.item_ids[i]: folder_set.class_names[label]
            for i, label in fixes.relabel.items()} == {"top/top_000.png": "bottom",
                                                       "centre/centre_004.jpg": "top"}


@pytest.mark.parametrize(("text", "message"), [
    ("path,label\ntop/top_000.png,bottom\nnope/nothing.png,top\n",
     "line 3: unknown item 'nope/nothing.png'"),
    ("path,label\ntop/top_000.png,bottm\n", "line 2: unknown class 'bottm'; the classes are"),
    ("path,label\ntop/top_000.png,bottom\n\ntop/top_000.png,centre\n",
     "line 4: item 'top/top_000.png' is named again (first on line 2)"),
    ("path,label\ntop/top_000.png,\n", "line 2: an empty label"),
    (",label\n,top\n", "lacks an item column"),
    ("path,class\ntop/top_000.png,top\n", "lacks an item column (path or item) and a label"),
    ("", "is empty"),
])
def test_every_bad_relabel_row_is_an_error_naming_it(folder_set, tmp_path: Path, text: str,
                                                     message: str) -> None:
    bad = write(tmp_path / "bad.csv", text)
    with pytest.raises(UserError, match="--relabel") as error:
        read_fixes(folder_set, relabel=str(bad), exclude=None)
    assert message in str(error.value) and str(bad) in str(error.value)
    assert "\n" not in str(error.value)


def test_bad_exclude_files(folder_set, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        read_fixes(folder_set, relabel=None, exclude=str(tmp_path / "none.txt"))
    bad = write(tmp_path / "out.txt", "top/top_000.png\ntop/top_000.png\n")
    with pytest.raises(UserError, match="line 2: item 'top/top_000.png' is named again"):
        read_fixes(folder_set, relabel=None, exclude=str(bad))


@pytest.mark.slow
def test_training_applies_the_fixes_and_leaves_every_file_as_it_was(folder: Path,
                                                                    tmp_path: Path) -> None:
    before = tree_digest(folder)
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.*"))
    relabel = write(tmp_path / "relabel.csv",
                    "path,label\n" + "".join(f"{name},centre\n" for name in names[:5]
                                             if not name.startswith("centre")))
    exclude = write(tmp_path / "exclude.txt", "\n".join(names[-3:]) + "\n")
    run = imgcls.train(data=str(folder), model="lenet5", epochs=1, image_size=32, channels=1,
                       relabel=str(relabel), exclude=str(exclude), output=str(tmp_path / "run"),
                       show_progress=False)
    assert tree_digest(folder) == before  # nothing moved, renamed or rewritten
    fixes = imgcls.load(run).metadata["data"]["fixes"]
    assert fixes["relabel"]["relabeled"] == 5 and fixes["exclude"]["excluded"] == 3
    assert len(fixes["relabel"]["sha256"]) == 64
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert config["relabel"] == str(relabel) and config["exclude"] == str(exclude)
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    evaluated = {row.split(",")[0] for row in
                 (tmp_path / "run" / "test_predictions.csv").read_text().splitlines()[1:]}
    assert not evaluated & set(names[-3:])  # excluded from every split, test included
    assert set(split["test"]) >= evaluated
