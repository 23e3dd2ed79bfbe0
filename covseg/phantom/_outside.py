"""What lies around the chest: the arms (when down) and the scanner table."""

from __future__ import annotations

import numpy as np

from covseg.phantom._anatomy import Anatomy, Array


def arm_depth(anat: Anatomy, u: Array, v: Array) -> tuple[Array, Array]:
    """Depth (mm) inside each arm lying beside the chest, and inside its humerus.

    Arms raised out of the field give depths of -1000 mm (nowhere).
    """
    shape = np.broadcast_shapes(u.shape, v.shape)
    if not anat.arms_down:
        nowhere = np.full(shape, -1000.0, dtype=np.float32)
        return nowhere, nowhere
    cu = anat.body_a + 48.0  # arm centre, just clear of the chest
    cv = anat.body_v + 0.15 * anat.body_b
    du = np.abs(u) - cu
    dv = v - cv
    dist = np.sqrt((du / 42.0) ** 2 + (dv / 50.0) ** 2)
    arm = (1.0 - dist) * 45.0
    bone = 11.0 - np.sqrt((du - 4.0) ** 2 + (dv + 6.0) ** 2)
    return arm.astype(np.float32), bone.astype(np.float32)


def table_layers(anat: Anatomy, u: Array, v: Array) -> tuple[Array, Array]:
    """The carbon table under the back: distances (mm) to its two thin skins, and its foam core.

    Returns (skin_distance, core_depth): the skins are where ``skin_distance < 1``; the foam core
    where ``core_depth > 0``. The table is slightly concave, its edges curving up.
    """
    top = anat.body_v + anat.body_b + anat.table_gap - 0.0012 * u**2
    below = v - top
    skin = np.minimum(np.abs(below - 1.5), np.abs(below - 30.0))
    skin = np.where(np.abs(u) < 240.0, skin, 1000.0)
    core = np.minimum(below - 3.0, 28.5 - below)
    core = np.where(np.abs(u) < 235.0, core, -1000.0)
    return skin.astype(np.float32), core.astype(np.float32)
