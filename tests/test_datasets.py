"""covseg.datasets: each layout gives the right cases, ids and sources; bad folders fail clearly."""

from pathlib import Path

import pytest

from covseg.datasets import (
    Case,
    DatasetError,
    case_id_from_filename,
    files_by_case,
    find_cases,
    source_from_case_id,
    subset_of,
)


def _touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


@pytest.mark.parametrize(
    ("name", "case_id"),
    [
        ("volume-covid19-A-0003_ct.nii.gz", "volume-covid19-A-0003"),
        ("volume-covid19-A-0003_seg.nii.gz", "volume-covid19-A-0003"),
        ("volume-covid19-A-0003.nii.gz", "volume-covid19-A-0003"),
        ("imagesTr/lung_001_0000.nii.gz", "lung_001"),
        ("lung_001.nii", "lung_001"),
        ("case_7.nrrd", "case_7"),
        ("case_7_seg.mha", "case_7"),
        ("12.png", "12"),
        ("12.jpg", "12"),
        ("a_0000_0000.nii.gz", "a_0000"),  # one role suffix only
        ("_seg.nii.gz", "_seg"),  # never an empty id
        ("notes.txt", "notes.txt"),
    ],
)
def test_case_id_from_filename(name, case_id):
    assert case_id_from_filename(name) == case_id


def test_sources_and_subsets():
    assert source_from_case_id("volume-covid19-A-0003") == "A"
    assert source_from_case_id("volume-covid19-b-0712") == "B"
    assert source_from_case_id("lung_001") == ""
    assert subset_of("A") == "seen"
    assert subset_of("B") == "unseen"
    assert subset_of("") == "unknown"  # no source: neither seen nor unseen
    assert subset_of("", seen_sources=("A", "")) == "unknown"
    assert subset_of("B", seen_sources=("A", "B")) == "seen"


def test_covid19_20_layout_pairs_ct_and_seg_in_natural_order(tmp_path):
    _touch(
        tmp_path,
        "Train/volume-covid19-A-0010_ct.nii.gz",
        "Train/volume-covid19-A-0010_seg.nii.gz",
        "Train/volume-covid19-A-0003_ct.nii.gz",
        "Train/volume-covid19-A-0003_seg.nii.gz",
        "Validation/volume-covid19-B-0012_ct.nii.gz",
        "labels_only/volume-covid19-B-0020_seg.nii.gz",
        "Train/readme.txt",
    )
    train = tmp_path / "Train"
    assert find_cases(tmp_path) == [
        Case(
            "volume-covid19-A-0003",
            train / "volume-covid19-A-0003_ct.nii.gz",
            train / "volume-covid19-A-0003_seg.nii.gz",
            "A",
        ),
        Case(
            "volume-covid19-A-0010",
            train / "volume-covid19-A-0010_ct.nii.gz",
            train / "volume-covid19-A-0010_seg.nii.gz",
            "A",
        ),
        Case(
            "volume-covid19-B-0012",
            tmp_path / "Validation" / "volume-covid19-B-0012_ct.nii.gz",
            None,
            "B",
        ),
        Case(
            "volume-covid19-B-0020",
            None,
            tmp_path / "labels_only" / "volume-covid19-B-0020_seg.nii.gz",
            "B",
        ),
    ]
    with pytest.raises(DatasetError, match="volume-covid19-B-0012_ct.nii.gz: no label for case"):
        find_cases(tmp_path, require_labels=True)


def test_nnunet_layout_uses_channel_0000_and_test_images(tmp_path):
    _touch(
        tmp_path,
        "imagesTr/lung_002_0000.nii.gz",
        "imagesTr/lung_002_0001.nii.gz",  # a second modality is not a case
        "labelsTr/lung_002.nii.gz",
        "imagesTs/lung_009_0000.nii.gz",
        "dataset.json",
    )
    assert find_cases(tmp_path) == [
        Case(
            "lung_002",
            tmp_path / "imagesTr/lung_002_0000.nii.gz",
            tmp_path / "labelsTr/lung_002.nii.gz",
            "",
        ),
        Case("lung_009", tmp_path / "imagesTs/lung_009_0000.nii.gz", None, ""),
    ]


def test_manifest_paths_are_relative_to_the_csv(tmp_path):
    _touch(tmp_path, "data/ct1.nii.gz", "data/m1.nii.gz", "data/ct2.nrrd")
    manifest = tmp_path / "cases.csv"
    manifest.write_text(
        "case,image,label,source\n"
        "one,data/ct1.nii.gz,data/m1.nii.gz,B\n"
        "volume-covid19-A-0002,data/ct2.nrrd,,\n"
    )
    expected = [
        Case("one", tmp_path / "data/ct1.nii.gz", tmp_path / "data/m1.nii.gz", "B"),
        Case("volume-covid19-A-0002", tmp_path / "data/ct2.nrrd", None, "A"),
    ]
    assert find_cases(tmp_path) == expected
    assert find_cases(manifest) == expected
    (tmp_path / "metrics.csv").write_text("case,dice\none,0.5\n")  # not a manifest
    assert find_cases(tmp_path) == expected


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("case,image\nx,a.nii.gz\n", "missing column"),
        ("case,image,label\nx,nowhere.nii.gz,\n", "line 2: nowhere.nii.gz does not exist"),
        ("case,image,label\nx,,\n", "line 2: case x has no image or label"),
        ("case,image,label\n,a.nii.gz,\n", "line 2: empty case id"),
    ],
)
def test_bad_manifest_names_the_line(tmp_path, content, problem):
    _touch(tmp_path, "a.nii.gz")
    (tmp_path / "m.csv").write_text(content)
    with pytest.raises(DatasetError, match=problem):
        find_cases(tmp_path)


def test_2d_slice_folder_medseg(shared_data):
    folder = shared_data / "medseg" / "train"
    cases = find_cases(folder, require_labels=True)
    numbers = sorted(int(path.stem) for path in (folder / "images").glob("*.jpg"))
    assert len(numbers) == 50
    assert [case.case_id for case in cases] == [str(n) for n in numbers]  # 2 before 10
    assert cases[3] == Case("3", folder / "images/3.jpg", folder / "lesion/3.png", "")


def test_2d_slice_folder_with_labels_subfolder(tmp_path):
    _touch(tmp_path, "images/a.png", "images/b.jpg", "labels/a.png")
    assert find_cases(tmp_path) == [
        Case("a", tmp_path / "images/a.png", tmp_path / "labels/a.png", ""),
        Case("b", tmp_path / "images/b.jpg", None, ""),
    ]


def test_duplicate_ids_are_refused_or_kept_once_each(tmp_path):
    _touch(tmp_path, "x_ct.nii.gz", "x_ct.nii", "x_seg.nii.gz", "y_ct.nii.gz")
    with pytest.raises(DatasetError, match="duplicate case ids: x"):
        find_cases(tmp_path)
    cases = find_cases(tmp_path, allow_duplicates=True)
    assert [case.case_id for case in cases] == ["x", "x", "y"]
    assert {case.image for case in cases} == {
        tmp_path / n for n in ("x_ct.nii.gz", "x_ct.nii", "y_ct.nii.gz")
    }


def test_absent_empty_and_unknown_folders(tmp_path):
    with pytest.raises(DatasetError, match="no such folder"):
        find_cases(tmp_path / "absent")
    with pytest.raises(DatasetError, match="no cases found"):
        find_cases(tmp_path)
    _touch(tmp_path, "scan.nii.gz")  # a flat file is neither _ct nor _seg
    with pytest.raises(DatasetError, match=f"{tmp_path}: no cases found"):
        find_cases(tmp_path)
    with pytest.raises(DatasetError, match="not a folder or a CSV manifest"):
        find_cases(tmp_path / "scan.nii.gz")


def test_files_by_case_groups_prediction_files(tmp_path):
    _touch(tmp_path, "a.nii.gz", "b_seg.nii.gz", "b.nii.gz", "notes.txt", "sub/c.nii.gz")
    assert files_by_case(tmp_path) == {
        "a": [tmp_path / "a.nii.gz"],
        "b": [tmp_path / "b.nii.gz", tmp_path / "b_seg.nii.gz"],
    }
