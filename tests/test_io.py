"""covseg.io: geometry survives each format, LPS/RAS agrees with nibabel, bad files fail clearly."""

import gzip
import itertools
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from covseg.io import (
    GridMismatchError,
    Volume,
    VolumeReadError,
    axis_codes,
    read_volume,
    to_reference_grid,
    write_mask,
    write_volume,
)


def _rotation(ax: float, ay: float, az: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


@pytest.fixture(params=["rotated", "mirrored"])
def oblique(request) -> Volume:
    """An int16 CT-like volume: oblique directions (a rotation, or a rotation with one axis
    mirrored as many scanners' files have), anisotropic spacing, off-centre origin."""
    rng = np.random.default_rng(0)
    array = rng.integers(-1024, 1500, size=(7, 6, 5)).astype(np.int16)
    direction = _rotation(0.1, -0.25, 0.4)
    if request.param == "mirrored":
        direction = direction @ np.diag([1.0, -1.0, 1.0])
    return Volume.from_geometry(
        array, spacing=(0.74, 0.81, 5.0), origin=(-181.3, 203.7, -412.25), direction=direction
    )


def test_volume_geometry_properties(oblique):
    assert oblique.spacing == pytest.approx((0.74, 0.81, 5.0))
    assert oblique.origin == pytest.approx((-181.3, 203.7, -412.25))
    np.testing.assert_allclose(oblique.direction.T @ oblique.direction, np.eye(3), atol=1e-12)
    assert oblique.voxel_volume_ml == pytest.approx(0.74 * 0.81 * 5.0 / 1000)
    # Voxel (1, 0, 0) lies one spacing along the first direction cosine from the origin.
    step = oblique.affine @ [1, 0, 0, 1] - oblique.affine @ [0, 0, 0, 1]
    np.testing.assert_allclose(step[:3], 0.74 * oblique.direction[:, 0])


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti_round_trip_keeps_array_and_float32_geometry(tmp_path, oblique, suffix):
    back = read_volume(write_volume(oblique, tmp_path / f"ct{suffix}"))
    assert back.array.dtype == np.int16
    np.testing.assert_array_equal(back.array, oblique.array)
    # NIfTI stores the sform as float32: the affine comes back as exactly those float32 values.
    np.testing.assert_array_equal(back.affine, oblique.affine.astype(np.float32))
    assert back.same_geometry(oblique)
    assert nib.load(tmp_path / f"ct{suffix}").header.get_xyzt_units()[0] == "mm"


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_itk_round_trip_keeps_array_and_geometry(tmp_path, oblique, suffix):
    back = read_volume(write_volume(oblique, tmp_path / f"ct{suffix}"))
    assert back.array.dtype == np.int16
    np.testing.assert_array_equal(back.array, oblique.array)
    np.testing.assert_allclose(back.affine, oblique.affine, rtol=0, atol=1e-9)


def test_itk_files_are_lps_and_nibabel_agrees_on_sitk_written_nifti(tmp_path, oblique):
    """SimpleITK writes the same image as NIfTI and MHA; nibabel's reading of the NIfTI (RAS+)
    must equal covseg's reading of the MHA (LPS converted to RAS+), array order included."""
    image = sitk.ReadImage(str(write_volume(oblique, tmp_path / "ct.mha")))
    # In the file the world is LPS: x and y flip sign relative to RAS+.
    ox, oy, oz = oblique.origin
    assert image.GetOrigin() == pytest.approx((-ox, -oy, oz))
    assert image.GetSize() == oblique.shape  # ITK sizes are (i, j, k) as well
    sitk.WriteImage(image, str(tmp_path / "by_sitk.nii.gz"))
    by_nibabel = nib.load(tmp_path / "by_sitk.nii.gz")
    ours = read_volume(tmp_path / "ct.mha")
    np.testing.assert_array_equal(np.asarray(by_nibabel.dataobj), ours.array)
    np.testing.assert_allclose(by_nibabel.affine, ours.affine, atol=1e-4)


def test_write_volume_converts_dtypes_nifti_cannot_hold(tmp_path):
    mask = Volume(np.eye(4, dtype=bool)[:, :, None].repeat(2, axis=2))
    assert read_volume(write_volume(mask, tmp_path / "m.nii.gz")).array.dtype == np.uint8
    labels = Volume(np.arange(8, dtype=np.int64).reshape(2, 2, 2))
    back = read_volume(write_volume(labels, tmp_path / "l.nii.gz"))
    assert back.array.dtype == np.int32
    np.testing.assert_array_equal(back.array, labels.array)
    with pytest.raises(ValueError, match="range"):
        write_volume(Volume(np.full((2, 2, 2), 2**40, dtype=np.int64)), tmp_path / "big.nii.gz")


def test_write_mask_keeps_reference_geometry_as_uint8(tmp_path, oblique):
    mask = oblique.array > 0
    back = read_volume(write_mask(mask, oblique, tmp_path / "seg.nii.gz"))
    assert back.array.dtype == np.uint8
    np.testing.assert_array_equal(back.array, mask.astype(np.uint8))
    assert back.same_geometry(oblique, atol_mm=1e-4)
    with pytest.raises(ValueError, match="shape"):
        write_mask(mask[:-1], oblique, tmp_path / "bad.nii.gz")


def test_dicom_series_geometry_and_hu(shared_data):
    ct = read_volume(shared_data / "totalseg" / "example_ct_dicom")
    assert ct.shape == (512, 512, 20)
    assert ct.spacing == pytest.approx((0.9765625, 0.9765625, 2.0))
    # Stored values are unsigned with RescaleIntercept -1024: HU must be signed and reach -1024.
    assert np.issubdtype(ct.array.dtype, np.signedinteger)
    assert ct.array.min() == -1024
    assert -1050 < np.median(ct.array[:20, :20, :]) < -950  # air in the corner of the field
    # TotalSegmentator's labels for this series (written with a flipped j axis) lie on the same
    # world grid: every labels voxel centre is a voxel centre of the CT.
    seg = nib.load(shared_data / "totalseg" / "example_seg_dicom.nii.gz")
    corners = np.array([[0, 0, 0, 1], [511, 511, 19, 1], [0, 511, 19, 1]]).T
    in_ct = np.linalg.inv(ct.affine) @ seg.affine @ corners
    np.testing.assert_allclose(in_ct, np.round(in_ct), atol=1e-3)
    assert sorted(np.round(in_ct[1]).astype(int).tolist()) == [0, 0, 511]


def test_single_dicom_file_applies_rescale_to_the_stored_pixels(shared_data):
    """Uncompressed file: the last 512*512*2 bytes are the stored int16 pixels (row-major);
    RescaleSlope 1, RescaleIntercept -1024, so HU = stored - 1024; array axis 0 is the column."""
    path = next((shared_data / "ny-sbu" / "A002304").glob("*.dcm"))
    raw = path.read_bytes()
    assert raw[-512 * 512 * 2 - 12 : -512 * 512 * 2 - 8] == b"\xe0\x7f\x10\x00"  # (7FE0,0010)
    stored = np.frombuffer(raw[-512 * 512 * 2 :], dtype="<i2").reshape(512, 512)
    ct = read_volume(path)
    assert ct.shape == (512, 512, 1)
    np.testing.assert_array_equal(ct.array[:, :, 0].T, stored.astype(np.int32) - 1024)


def test_dicom_series_with_a_missing_slice_is_refused(shared_data, tmp_path):
    files = sorted((shared_data / "totalseg" / "example_ct_dicom").iterdir())
    assert len(files) == 20
    for path in files[:9] + files[10:]:
        (tmp_path / path.name).write_bytes(path.read_bytes())
    with pytest.raises(VolumeReadError, match=r"gaps from 2 to 4 mm\); missing slices"):
        read_volume(tmp_path)


def test_folder_with_two_dicom_series_is_refused(shared_data):
    with pytest.raises(VolumeReadError, match=r"A002304: 2 DICOM series"):
        read_volume(shared_data / "ny-sbu" / "A002304")


def test_2d_slices_read_as_grayscale_in_row_column_order(shared_data, tmp_path):
    image = read_volume(shared_data / "medseg" / "train" / "images" / "0.jpg")
    with Image.open(shared_data / "medseg" / "train" / "images" / "0.jpg") as pil:
        width, height = pil.size
    assert image.shape == (height, width)
    assert image.array.dtype == np.uint8
    np.testing.assert_array_equal(image.affine, np.eye(4))
    assert image.spacing == (1.0, 1.0)
    # Palette label maps keep their indices (MedSeg classes: 0, 1 ground glass, 2 consolidation).
    classes = read_volume(shared_data / "medseg" / "train" / "classes" / "0.png")
    assert set(np.unique(classes.array)) <= {0, 1, 2} and classes.array.max() == 2
    # Colour becomes luminance (ITU-R 601-2: L = 0.299 R + 0.587 G + 0.114 B).
    rgb = np.zeros((3, 4, 3), dtype=np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb).save(tmp_path / "red.png")
    np.testing.assert_array_equal(read_volume(tmp_path / "red.png").array, np.full((3, 4), 60))


def test_2d_mask_written_as_png_0_255_keeps_orientation(tmp_path):
    reference = Volume(np.zeros((5, 3), dtype=np.uint8))
    mask = np.zeros((5, 3), dtype=bool)
    mask[0, 2] = mask[4, 0] = True  # asymmetric: a transposed or flipped write would show
    path = write_mask(mask, reference, tmp_path / "mask.png")
    with Image.open(path) as pil:
        assert pil.mode == "L" and pil.size == (3, 5)
        np.testing.assert_array_equal(np.asarray(pil), mask * 255)
    np.testing.assert_array_equal(read_volume(path).array, mask * 255)
    with pytest.raises(ValueError, match="binary"):
        write_mask(np.full((5, 3), 2), reference, tmp_path / "labels.png")


def _bad_files(folder: Path) -> dict[str, Path]:
    good = write_volume(
        Volume(np.arange(64, dtype=np.int16).reshape(4, 4, 4)), folder / "ok.nii.gz"
    )
    data = good.read_bytes()
    noise = np.random.default_rng(0).integers(0, 999, (40, 40, 40)).astype(np.int16)
    big = write_volume(Volume(noise), folder / "big.nii.gz").read_bytes()
    files = {
        "truncated": data[: len(data) // 2],
        "truncated_data": big[: len(big) // 2],
        "corrupt": data[:20] + bytes(len(data) - 40) + data[-20:],
        "text": b"this is not an image\n",
        "empty": b"",
    }
    paths = {}
    for name, content in files.items():
        paths[name] = folder / f"{name}.nii.gz"
        paths[name].write_bytes(content)
    paths["text_nii"] = folder / "text.nii"
    paths["text_nii"].write_bytes(b"not a nifti header" * 30)
    paths["gz_of_text"] = folder / "gz.nii.gz"
    paths["gz_of_text"].write_bytes(gzip.compress(b"hello" * 100))
    paths["text_mha"] = folder / "text.mha"
    paths["text_mha"].write_text("not an image\n")
    paths["text_png"] = folder / "text.png"
    paths["text_png"].write_text("not an image\n")
    paths["empty_dir"] = folder / "no_dicom"
    paths["empty_dir"].mkdir()
    paths["missing"] = folder / "missing.nii.gz"
    return paths


def test_bad_files_raise_one_line_error_naming_the_file(tmp_path):
    for kind, path in _bad_files(tmp_path).items():
        with pytest.raises(VolumeReadError) as info:
            read_volume(path)
        message = str(info.value)
        assert message.startswith(f"{path}: "), kind
        assert "\n" not in message, kind
    with pytest.raises(VolumeReadError, match="truncated file"):
        read_volume(tmp_path / "truncated_data.nii.gz")
    with pytest.raises(VolumeReadError, match="Unable to determine ImageIO reader"):
        read_volume(tmp_path / "text.mha")


def _reordered(reference: Volume, perm: tuple[int, ...], flips: tuple[int, ...]) -> Volume:
    """The reference's voxels stored in another order: axes permuted by ``perm`` (as
    ``np.transpose``), then the new axes in ``flips`` reversed. Voxel i' of the result is voxel
    G i' of the reference, with G = P F: F reverses each flipped axis (i -> n - 1 - i) and P
    sends new axis k to the reference's axis perm[k]; so its affine is reference.affine @ G."""
    n = reference.array.ndim
    array = np.flip(np.transpose(reference.array, perm), axis=flips)
    flip = np.eye(4)
    for k in flips:
        flip[k, k], flip[k, 3] = -1.0, array.shape[k] - 1
    permute = np.eye(4)
    permute[:n, :n] = 0.0
    for k in range(n):
        permute[perm[k], k] = 1.0
    return Volume(array, reference.affine @ permute @ flip)


@pytest.mark.parametrize("perm", list(itertools.permutations(range(3))))
@pytest.mark.parametrize(
    "flips", [f for r in range(4) for f in itertools.combinations(range(3), r)]
)
def test_to_reference_grid_undoes_every_axis_order_and_flip_exactly(oblique, perm, flips):
    """48 storage orders of one oblique grid: each comes back voxel for voxel, no interpolation."""
    labels = Volume(np.arange(oblique.array.size).reshape(oblique.shape), oblique.affine)
    moved = _reordered(labels, perm, flips)
    # Premise: each voxel (a unique value) sits at the same world position in both.
    where = np.argwhere(np.ones(moved.shape, bool))
    value = moved.array[tuple(where.T)]
    original = np.array(np.unravel_index(value, labels.shape))
    np.testing.assert_allclose(
        moved.affine @ np.c_[where, np.ones(len(where))].T,
        labels.affine @ np.r_[original, np.ones((1, len(where)))],
        atol=1e-9,
    )
    back = to_reference_grid(moved, labels)
    np.testing.assert_array_equal(back.array, labels.array)
    np.testing.assert_array_equal(back.affine, labels.affine)
    # The values and their type pass through untouched.
    assert to_reference_grid(_reordered(oblique, perm, flips), oblique).array.dtype == np.int16


def test_to_reference_grid_keeps_a_volume_already_on_the_grid(oblique):
    assert to_reference_grid(oblique, oblique) is oblique
    # A NIfTI header's float32 affine, and an origin 0.4 um off: still the same grid.
    nudged = Volume(oblique.array, oblique.affine.astype(np.float32))
    nudged.affine[:3, 3] += 4e-4
    assert to_reference_grid(nudged, oblique) is nudged


def test_to_reference_grid_2d_transposed_slice():
    slice_ = Volume(np.arange(12, dtype=np.uint8).reshape(3, 4), np.diag([0.7, 0.9, 1.0, 1.0]))
    swapped = _reordered(slice_, (1, 0), (0,))
    np.testing.assert_array_equal(to_reference_grid(swapped, slice_).array, slice_.array)


def test_to_reference_grid_2d_and_4d_mismatches():
    png = Volume(np.zeros((30, 20), np.uint8))
    with pytest.raises(
        GridMismatchError, match=r"^p\.png: 20 voxels along axis 0, the truth has 30"
    ):
        to_reference_grid(
            Volume(np.zeros((20, 30), np.uint8)), png, path="p.png", reference_name="the truth"
        )
    series = Volume(np.zeros((4, 3, 2, 5)), np.diag([0.8, 0.8, 2.0, 1.0]))
    assert to_reference_grid(series, series) is series
    with pytest.raises(GridMismatchError, match=r"4D grid \(shape \(4, 3, 2, 4\)\) differs"):
        to_reference_grid(Volume(np.zeros((4, 3, 2, 4)), series.affine), series)


def test_axis_codes_name_the_direction_each_axis_grows_to():
    assert axis_codes(np.diag([-0.7, -0.7, 2.0, 1.0])) == "LPS"
    assert axis_codes(np.diag([1.0, 1.0, 1.0, 1.0])) == "RAS"
    assert axis_codes(np.array([[0, 0, -3, 0], [2, 0, 0, 0], [0, -1, 0, 0], [0, 0, 0, 1]])) == "AIL"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        # One slice more along k: the k axis (S) is named with both counts.
        (
            lambda a: (a[:, :, :1].repeat(6, axis=2), np.diag([-0.8, -0.8, 2.0, 1.0])),
            r"mask\.nii\.gz: 6 voxels along axis 2 \(S\), the CT has 5 \(shape \(4, 3, 6\) vs",
        ),
        # 2.5 mm slices instead of 2 mm.
        (
            lambda a: (a, np.diag([-0.8, -0.8, 2.5, 1.0])),
            r"spacing 2\.5 mm along axis 2 \(S\), the CT has 2 mm \(differs by 0\.5 mm\)",
        ),
        # Half a voxel off along j (0.4 mm towards P, which is +j).
        (
            lambda a: (
                a,
                np.array([[-0.8, 0, 0, 0], [0, -0.8, 0, -0.4], [0, 0, 2, 0], [0, 0, 0, 1]]),
            ),
            r"grid shifted by 0\.4 mm from the CT's \(origin \(0, -0\.4, 0\) vs \(0, 0, 0\) mm; "
            r"\+0\.5 voxels along axis 1 \(P\)\)",
        ),
        # A 3 degree in-plane rotation cannot be undone by reordering.
        (
            lambda a: (
                a,
                np.block(
                    [
                        [
                            np.diag([-0.8, -0.8, 2.0]) @ _rotation(0, 0, np.radians(3)),
                            np.zeros((3, 1)),
                        ],
                        [np.zeros((1, 3)), np.ones((1, 1))],
                    ]
                ),
            ),
            r"axes rotated against the CT's by up to 3 degrees .*resample onto the CT's grid",
        ),
        (
            lambda a: (a[:, :, 0], np.diag([-0.8, -0.8, 2.0, 1.0])),
            r"2D image of shape \(4, 3\), the CT is 3D of shape \(4, 3, 5\)",
        ),
    ],
)
def test_to_reference_grid_names_what_differs_and_by_how_much(change, message):
    ct = Volume(np.zeros((4, 3, 5), np.int16), np.diag([-0.8, -0.8, 2.0, 1.0]))
    array, affine = change(np.zeros((4, 3, 5), np.uint8))
    with pytest.raises(GridMismatchError, match=message):
        to_reference_grid(Volume(array, affine), ct, path="mask.nii.gz", reference_name="the CT")


def test_totalsegmentator_mask_of_a_dicom_series_lands_on_its_voxels(shared_data):
    """TotalSegmentator wrote the labels of this LPS series as LAS (j flipped). Each labelled
    voxel, placed in the world by the labels' own affine and back into CT indices by the CT's,
    must carry the same label after reorientation."""
    ct = read_volume(shared_data / "totalseg" / "example_ct_dicom")
    seg = read_volume(shared_data / "totalseg" / "example_seg_dicom.nii.gz")
    assert (axis_codes(ct.affine), axis_codes(seg.affine)) == ("LPS", "LAS")
    assert not seg.same_geometry(ct)
    aligned = to_reference_grid(seg, ct, path="seg", reference_name="the CT")
    np.testing.assert_array_equal(aligned.affine, ct.affine)
    labelled = np.argwhere(seg.array > 0)
    assert len(labelled) > 1000
    world = seg.affine @ np.c_[labelled, np.ones(len(labelled))].T
    in_ct = np.linalg.inv(ct.affine) @ world
    index = np.round(in_ct[:3]).astype(int)
    np.testing.assert_allclose(in_ct[:3], index, atol=1e-3)
    np.testing.assert_array_equal(aligned.array[tuple(index)], seg.array[tuple(labelled.T)])
    assert aligned.array.sum(dtype=np.int64) == seg.array.sum(dtype=np.int64)


def test_mask_of_the_lungmask_series_saved_in_ras_comes_back(shared_data, tmp_path):
    """A mask of lungmask's two-slice DICOM series (LPS), saved by nibabel in RAS+ canonical
    order (i and j flipped), as many tools store NIfTI."""
    ct = read_volume(shared_data / "lungmask-dicom")
    assert ct.shape == (512, 512, 2) and axis_codes(ct.affine) == "LPS"
    mask = (ct.array < -400).astype(np.uint8)
    canonical = nib.as_closest_canonical(nib.Nifti1Image(mask, ct.affine))
    nib.save(canonical, tmp_path / "air.nii.gz")
    saved = read_volume(tmp_path / "air.nii.gz")
    assert axis_codes(saved.affine) == "RAS"
    back = to_reference_grid(saved, ct, path=tmp_path / "air.nii.gz", reference_name="the CT")
    np.testing.assert_array_equal(back.array, mask)


def test_a_folder_without_dicom_fails_in_one_line_without_itk_warnings(tmp_path, capfd):
    """ITK prints a multi-line C++ warning ("No Series were found") straight to stderr."""
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(VolumeReadError, match=r"notes_dir: no DICOM series found$"):
        read_volume(tmp_path.rename(tmp_path.with_name("notes_dir")))
    assert capfd.readouterr().err == ""
