"""How much of the radiologists' lesion the lung mask keeps, on real COVID-19 CT slices.

The 50 MedSeg training slices (``../shared/data/medseg/train``: 8-bit, lung-windowed, cropped to
the body, radiologist lesion masks) are mapped back to approximate HU with the window the
slices-2d model uses (:data:`covseg.model.slices2d.data.HU_WINDOW`: grey 0..255 -> -1100..300 HU)
as one-slice volumes of 0.7 mm pixels (1 mm thick), and :func:`covseg.lung.lung_mask` runs on
each. Printed: per slice the share of its lesion pixels inside the lung mask, the pooled share
(all lesion pixels of all slices), the slices without lungs, and where each slice's aerated lung
and soft tissue land in HU (:func:`anchors`): slices whose window is far from the fitted one
(aerated lung more than 150 HU from -850 HU, or soft tissue from +40 HU) are listed, since
their HU are only approximate. About half of the MedSeg slices are stored
rotated by 90 degrees (the lungs above each other); they are turned upright first (the lungs side
by side), which the lung mask's left/right split needs.

Then the lung volumes on lungmask's two DICOM slices against its R231 model's counts, the lung
volume of the 20 NY-SBU slices (real HU, several with dense bilateral disease), and the time.

Run: ``.venv/bin/python benchmarks/bench_lung_coverage.py [--data ../shared/data]``
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image
from scipy import ndimage

from covseg.io import Volume, read_volume
from covseg.lung import lung_mask
from covseg.model.slices2d.data import HU_WINDOW

#: Pixel size (mm) assumed for the MedSeg slices (they carry none).
PIXEL_MM = 0.7
#: Aerated lung and soft tissue (HU) as a CT shows them.
LUNG_HU, SOFT_HU = -850.0, 40.0
#: A slice whose aerated lung or soft tissue maps this far (HU) from them is "far" from the window.
FAR_HU = 150.0
#: lungmask's R231 voxel counts on its two test slices (its own tests): right, left.
R231 = (64752, 36536)


def upright(grey: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.uint8], bool]:
    """The slice with its lungs side by side: rotated by 90 degrees when they lie above each other.

    The two largest dark regions (below the image's Otsu threshold, off the border) are taken as
    the lungs; when their centres are further apart in rows than in columns, the slice is rotated.
    """
    from skimage.filters import threshold_otsu

    dark = ndimage.binary_opening(grey < threshold_otsu(grey), iterations=2)
    comp, n = ndimage.label(dark)
    if n < 2:
        return grey, False
    sizes = ndimage.sum_labels(dark, comp, np.arange(1, n + 1))
    two = np.argsort(sizes)[::-1][:2] + 1
    (r0, c0), (r1, c1) = ndimage.center_of_mass(dark, comp, two)
    if abs(r0 - r1) > abs(c0 - c1):
        return np.ascontiguousarray(np.rot90(grey)), True
    return grey, False


def to_volume(grey: npt.NDArray[np.uint8], window: tuple[float, float] = HU_WINDOW) -> Volume:
    """A one-slice CT in HU from an 8-bit slice (rows anterior to posterior, columns the
    patient's right to left, as radiological images are shown)."""
    low, high = window
    hu = low + grey.astype(np.float32) / 255.0 * (high - low)
    # Array axes (column, row, slice); LPS-like affine: +column = patient's left, +row = posterior.
    affine = np.diag([-PIXEL_MM, -PIXEL_MM, 1.0, 1.0])
    return Volume(np.ascontiguousarray(hu.T[:, :, None]), affine)


def anchors(grey: npt.NDArray[np.uint8]) -> tuple[float, float]:
    """HU (with :data:`HU_WINDOW`) of a slice's aerated lung and soft tissue: the most frequent
    grey level below and above the slice's Otsu threshold."""
    from skimage.filters import threshold_otsu

    counts = np.bincount(grey.ravel(), minlength=256)
    split = int(threshold_otsu(grey))
    modes = (float(np.argmax(counts[:split])), float(split + np.argmax(counts[split:])))
    low, high = HU_WINDOW
    lung, soft = (low + g / 255.0 * (high - low) for g in modes)
    return lung, soft


def coverage(folder: Path) -> list[dict[str, object]]:
    """Per MedSeg slice: lesion pixels, the share inside the lung mask, and the error if any."""
    rows: list[dict[str, object]] = []
    for image in sorted((folder / "images").glob("*.jpg"), key=lambda p: int(p.stem)):
        grey = np.asarray(Image.open(image).convert("L"), dtype=np.uint8)
        lesion = np.asarray(Image.open(folder / "lesion" / f"{image.stem}.png").convert("L")) > 127
        turned, rotated = upright(grey)
        if rotated:
            lesion = np.rot90(lesion)
        start = time.process_time()
        try:
            lungs = lung_mask(to_volume(turned), image.name).array[:, :, 0].T > 0
            error = ""
        except ValueError as exc:
            lungs, error = np.zeros_like(lesion), str(exc)
        rows.append(
            {
                "slice": image.stem,
                "grey": grey,
                "rotated": rotated,
                "lesion": int(lesion.sum()),
                "inside": int((lesion & lungs).sum()),
                "lung_share": float(lungs.mean()),
                "cpu_s": time.process_time() - start,
                "error": error,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).parents[2] / "shared" / "data")
    args = parser.parse_args()
    rows = coverage(args.data / "medseg" / "train")
    far = []
    for row in rows:
        row["anchors"] = lung, soft = anchors(row["grey"])  # type: ignore[arg-type]
        if abs(lung - LUNG_HU) > FAR_HU or abs(soft - SOFT_HU) > FAR_HU:
            far.append(row["slice"])
    print("slice  lesion px  inside  lung % of image  lung / soft tissue (HU)  rotated  error")
    for row in rows:
        share = row["inside"] / max(row["lesion"], 1)  # type: ignore[operator]
        lung, soft = row["anchors"]  # type: ignore[misc]
        print(
            f"{row['slice']:>5}  {row['lesion']:>9}  {share:6.3f}  {100 * row['lung_share']:15.1f}"
            f"  {lung:11.0f} / {soft:<11.0f}  {'yes' if row['rotated'] else 'no':>7}"
            f"  {row['error']}"
        )

    def pooled(subset: list[dict[str, object]]) -> str:
        inside = sum(r["inside"] for r in subset)  # type: ignore[misc]
        total = sum(r["lesion"] for r in subset)  # type: ignore[misc]
        worst = min(r["inside"] / max(r["lesion"], 1) for r in subset)  # type: ignore[operator]
        return f"{100 * inside / total:.1f} % pooled, worst slice {100 * worst:.1f} %"

    near = [r for r in rows if r["slice"] not in far]
    print(f"MedSeg train, {len(rows)} slices: lesion inside the lung mask {pooled(rows)}")
    print(f"  {len(near)} slices near the fitted window: {pooled(near)}")
    print(
        f"  {len(far)} slices far from it (lung or soft tissue > {FAR_HU:.0f} HU off): "
        + ", ".join(far)
    )
    print(f"  slices without lungs: {[r['slice'] for r in rows if r['error']] or 'none'}")
    cpu = [float(r["cpu_s"]) for r in rows]  # type: ignore[arg-type]
    print(f"  lung_mask CPU time per slice: mean {np.mean(cpu):.3f} s, max {max(cpu):.3f} s")

    ct = read_volume(args.data / "lungmask-dicom")
    start = time.process_time()
    lungs = lung_mask(ct).array
    cpu_s = time.process_time() - start
    counts = [int((lungs == v).sum()) for v in (1, 2)]
    ratios = [c / r for c, r in zip(counts, R231, strict=True)]
    print(
        f"lungmask-dicom: right {counts[0]} voxels ({ratios[0]:.3f} x R231's {R231[0]}), "
        f"left {counts[1]} ({ratios[1]:.3f} x R231's {R231[1]}); {cpu_s:.2f} s CPU"
    )
    print("NY-SBU slices: lung volume (mL) right + left")
    for path in sorted((args.data / "ny-sbu").rglob("*.dcm")):
        ct = read_volume(path)
        try:
            lungs = lung_mask(ct, path.name).array
            right, left = ((lungs == v).sum() * ct.voxel_volume_ml for v in (1, 2))
            print(f"  {path.parent.name}/{path.name}: {right:.1f} + {left:.1f} mL")
        except ValueError as exc:
            print(f"  {path.parent.name}/{path.name}: {exc}")


if __name__ == "__main__":
    main()
