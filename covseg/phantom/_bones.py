"""Ribs, spine and sternum, each as a cortical shell (about +700 HU) around cancellous bone.

Each function returns (bone, cortex) booleans: ``bone`` the whole bone, ``cortex`` its shell.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from covseg.phantom._anatomy import Anatomy, Array

Mask = npt.NDArray[np.bool_]


def ribs(anat: Anatomy, u: Array, v: Array, w: Array) -> tuple[Mask, Mask]:
    """Twelve pairs of ribs, sloping down from the spine to the front of the chest.

    A rib runs round the outside of the chest cavity; its height drops by ``rib_drop`` from back
    to front, so one axial slice cuts several ribs obliquely, as on real CT. Ribs start at the
    transverse processes and end (as cartilage, left out) before the sternum; the lowest ones
    float and stop at the sides.
    """
    shape = np.broadcast_shapes(u.shape, v.shape, w.shape)
    t_scale = anat.cavity_scale(anat.t(w))
    a = anat.cavity_a * t_scale + 7.0
    b = anat.cavity_b * t_scale + 7.0
    dv = v - anat.cavity_v
    rho = np.sqrt((u / a) ** 2 + (dv / b) ** 2)
    # Only a thin shell round the cavity can hold ribs: evaluate the rest there alone.
    shell = np.nonzero(np.abs(rho - 1.0) * np.minimum(a, b) < 4.0)
    uu, vv, ww = (np.broadcast_to(x, shape)[shell] for x in (u, dv, w))
    rr = rho[shell]
    radial = (rr - 1.0) * np.sqrt(uu**2 + vv**2) / np.maximum(rr, 1e-6)  # mm off the rib ring
    front = np.arctan2(np.abs(uu), vv) / np.pi  # 0 at the spine, 1 at the sternum
    drop = anat.rib_drop * (0.5 * front + 0.25 * (1 - np.cos(np.pi * front)))
    phase = (anat.w_at(1.0) - ww - drop) / anat.rib_pitch + anat.rib_phase
    number = np.floor(phase)
    within = (phase - number - 0.5) * anat.rib_pitch  # mm from the rib's mid-height
    reach = np.where(number >= 10, 0.45, 0.82)  # floating ribs stop at the side
    along = (front < reach) & (np.abs(uu) > 22.0) & (number >= 0) & (number < 12)
    r2 = (radial / 3.5) ** 2 + (within / 6.0) ** 2
    bone = np.zeros(shape, dtype=bool)
    cortex = np.zeros(shape, dtype=bool)
    bone[shell] = along & (r2 < 1.0)
    cortex[shell] = along & (r2 < 1.0) & (r2 > 0.4)
    return bone, cortex


def spine(anat: Anatomy, u: Array, v: Array, w: Array) -> tuple[Mask, Mask, Mask]:
    """Vertebral bodies with discs, neural arch and spinous process; also the spinal canal.

    Returns (bone, cortex, disc).
    """
    sv = anat.spine_v
    level = ((anat.w_at(1.0) - w) / 26.0) % 1.0
    disc = (level > 0.84) & ((u / 21.0) ** 2 + ((v - sv) / 18.0) ** 2 < 1.0)
    body2 = (u / 21.0) ** 2 + ((v - sv) / 18.0) ** 2
    vertebra = (body2 < 1.0) & ~disc
    canal_r = np.sqrt(u**2 + (v - sv - 29.0) ** 2)
    arch = (canal_r > 8.5) & (canal_r < 14.0) & (v > sv + 18.0)
    process = (np.abs(u) < 4.0) & (v > sv + 40.0) & (v < sv + 68.0)
    # transverse processes point sideways and backwards from the arch
    transverse = (np.abs(v - sv - 20.0 - 0.5 * np.abs(u)) < 4.5) & (np.abs(u) < 36.0)
    posterior = (arch | process | transverse) & (level < 0.8)
    bone = vertebra | posterior
    cortex = (vertebra & (body2 > 0.72)) | posterior
    return bone, cortex, disc & (body2 < 1.0)


def sternum(anat: Anatomy, u: Array, v: Array, w: Array) -> tuple[Mask, Mask]:
    """The sternum in front of the mediastinum, from mid-chest up to the apex level."""
    t = anat.t(w)
    sv = anat.cavity_v - anat.cavity_b - 8.0
    r2 = (u / 15.0) ** 2 + ((v - sv) / 5.5) ** 2
    bone = (r2 < 1.0) & (t > 0.3) & (t < 1.0)
    return bone, bone & (r2 > 0.45)
