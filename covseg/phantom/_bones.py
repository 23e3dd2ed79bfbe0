"""Ribs, shoulder blades, spine and sternum: cortical shells (about +700 HU) round cancellous bone.

Each function returns (bone, cortex) booleans: ``bone`` the whole bone, ``cortex`` its shell.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from covseg.phantom._anatomy import Anatomy, Array

Mask = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class _Shell:
    """Voxels of a thin shell round the chest cavity, ``offset`` mm outside it.

    Attributes
    ----------
    where
        Index arrays of the shell's voxels in the full grid.
    radial
        Distance (mm) outside the shell's mid-surface.
    front
        Angle round the chest: 0 at the spine, 1 at the sternum.
    u, w
        Lateral position and height (mm) of each voxel.
    """

    where: tuple[npt.NDArray[np.intp], ...]
    radial: Array
    front: Array
    u: Array
    w: Array

    @classmethod
    def around(cls, anat: Anatomy, u: Array, v: Array, w: Array, offset: float) -> _Shell:
        shape = np.broadcast_shapes(u.shape, v.shape, w.shape)
        t_scale = anat.cavity_scale(anat.t(w))
        a = anat.cavity_a * t_scale + offset
        b = anat.cavity_b * t_scale + offset
        dv = v - anat.cavity_v
        rho = np.sqrt((u / a) ** 2 + (dv / b) ** 2)
        # Only voxels near the mid-surface matter: evaluate the rest there alone.
        where = np.nonzero(np.abs(rho - 1.0) * np.minimum(a, b) < 4.0)
        uu, vv, ww = (np.broadcast_to(x, shape)[where] for x in (u, dv, w))
        rr = rho[where]
        radial = (rr - 1.0) * np.sqrt(uu**2 + vv**2) / np.maximum(rr, 1e-6)
        front = (np.arctan2(np.abs(uu), vv) / np.pi).astype(np.float32)
        return cls(where, radial, front, uu, ww)

    def fill(self, shape: tuple[int, ...], values: Mask) -> Mask:
        """A full-grid mask that is ``values`` on the shell, False elsewhere."""
        out = np.zeros(shape, dtype=bool)
        out[self.where] = values
        return out


def ribs(anat: Anatomy, u: Array, v: Array, w: Array) -> tuple[Mask, Mask]:
    """Twelve pairs of ribs, sloping down from the spine to the front of the chest.

    A rib runs round the outside of the chest cavity; its height drops by ``rib_drop`` from back
    to front, so one axial slice cuts several ribs obliquely, as on real CT. Ribs start at the
    transverse processes and end (as cartilage, left out) before the sternum; the lowest ones
    float and stop at the sides.
    """
    shell = _Shell.around(anat, u, v, w, 7.0)
    front = shell.front
    drop = anat.rib_drop * (0.5 * front + 0.25 * (1 - np.cos(np.pi * front)))
    phase = (anat.w_at(1.0) - shell.w - drop) / anat.rib_pitch + anat.rib_phase
    number = np.floor(phase)
    within = (phase - number - 0.5) * anat.rib_pitch  # mm from the rib's mid-height
    reach = np.where(number >= 10, 0.45, 0.82)  # floating ribs stop at the side
    along = (front < reach) & (np.abs(shell.u) > 22.0) & (number >= 0) & (number < 12)
    r2 = (shell.radial / 3.5) ** 2 + (within / 5.5) ** 2
    shape = np.broadcast_shapes(u.shape, v.shape, w.shape)
    bone = along & (r2 < 1.0)
    return shell.fill(shape, bone), shell.fill(shape, bone & (r2 > 0.4))


def scapulae(anat: Anatomy, u: Array, v: Array, w: Array) -> tuple[Mask, Mask]:
    """Shoulder blades: thin curved plates on the upper back ribs, narrowing to a lower tip."""
    shell = _Shell.around(anat, u, v, w, 14.0)
    t = anat.t(shell.w)
    width = 0.16 * np.clip((t - 0.45) / 0.3, 0.0, 1.0)  # angular half-width, 0 at the tip
    plate = (np.abs(shell.front - 0.3) < width) & (t < 1.05) & (np.abs(shell.radial) < 2.5)
    shape = np.broadcast_shapes(u.shape, v.shape, w.shape)
    return shell.fill(shape, plate), shell.fill(shape, plate & (np.abs(shell.radial) > 1.2))


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
