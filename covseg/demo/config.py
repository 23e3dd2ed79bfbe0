"""The demo's settings: the phantom counts for a budget, and the baseline plan scaled down.

The baseline's network (MONAI BasicUNet) and augmentation chain are kept; the plan is scaled down
so that a run fits a laptop's CPU: a coarser model grid, smaller patches, half the feature
widths, a higher learning rate and a wall-clock budget instead of 500 epochs
(:func:`demo_plan` lists every change; the model folder's ``plan.yaml`` holds them all).
"""

from __future__ import annotations

from typing import Any

from covseg.demo.state import DemoConfig

#: The trained model's name in the evaluation and the ranking.
MODEL_NAME = "covseg-baseline"
#: What the stages other than training take on 2 idle cores (minutes): training gets the rest.
OTHER_STAGES_MINUTES = 3.5
#: Training's least share of a budget too small for the other stages.
MIN_TRAIN_SHARE = 0.25
#: The tiny run's training cap: far above its 100 epochs' need, so that the epochs decide.
TINY_TRAIN_MINUTES = 20.0
#: Slice thickness of the model grid (mm): the baseline's.
MODEL_SLICE_MM = 5.0
#: Test phantoms per source (seen A, unseen B): with 12 cases a one-sided Wilcoxon test can reach
#: p = 2^-12 when one algorithm wins on every case, significant after Holm over 42 pairs; with 3,
#: p >= 1/8 and every algorithm ties.
N_TEST = 12


def make_config(minutes: float, tiny: bool = False, seed: int = 0) -> DemoConfig:
    """The run's settings for a budget of ``minutes``; ``tiny`` is the test suite's smallest run.

    Phantom counts and size are fixed, so every stage but training takes about
    :data:`OTHER_STAGES_MINUTES` on 2 idle cores; training gets the rest of the budget, at
    least :data:`MIN_TRAIN_SHARE` of it (a budget under about 5 minutes is then overrun). The
    tiny run trains a
    fixed 100 epochs on 6 small phantoms instead (about 70 s of the run's 90 on 2 idle cores), so
    that its outcome does not depend on how busy the machine is: enough for the model to beat the
    weakest simulated team on the seen cases (seeds 0-2: 0.40, 0.59, 0.37 against 0.26, 0.40,
    0.23), which the test suite checks.
    """
    from covseg import __version__

    if minutes <= 0:
        raise ValueError(f"--minutes must be positive, got {minutes:g}")
    train_minutes = round(max(MIN_TRAIN_SHARE * minutes, minutes - OTHER_STAGES_MINUTES), 2)
    if tiny:
        return DemoConfig(minutes, TINY_TRAIN_MINUTES, 64, 6, 1, 3, 3, 100, 100, seed, __version__)
    return DemoConfig(
        minutes, train_minutes, 96, 8, 2, N_TEST, N_TEST, 10_000, 1000, seed, __version__
    )


def demo_plan(config: DemoConfig) -> tuple[dict[str, Any], list[str]]:
    """The baseline plan scaled down for the demo, and the overrides applied (to print)."""
    from covseg.model.plan import apply_overrides, load_preset
    from covseg.phantom import FULL_SIZE, SOURCES

    # Model grid as coarse as the phantoms' in-plane spacing: resampling finer only costs time.
    in_plane = round(SOURCES["A"].spacing[0] * FULL_SIZE / config.size, 1)
    # Small patches buy more steps in the budget, which is what a minutes-long run lacks most
    # (32 vs 64 in-plane: about 4x the steps, the same Dice after 5 minutes, RESULTS.md).
    patch = 32
    overrides = [
        f"preprocessing.spacing_mm=[{in_plane}, {in_plane}, {MODEL_SLICE_MM}]",
        f"augmentation.pad_to=[{patch}, {patch}]",
        f"augmentation.crop_size=[{patch}, {patch}, 16]",
        f"inference.roi_size=[{patch}, {patch}, 16]",
        "network.features=[16, 16, 32, 64, 128, 16]",
        # nnU-Net's optimiser and poly schedule: 0.31 vs Adam's 0.21 held-out Dice after the
        # same 5 minutes (benchmarks/RESULTS.md), and the run ends on small steps.
        "training.optimizer=sgd",
        "training.learning_rate=0.01",
        "training.lr_schedule=poly",
        "training.amp=false",
        # Train inside the lung box that predict segments: negative patches show lung, pleura
        # and vessels (the network's false positives) rather than air and body wall.
        "training.lung_crop=true",
        f"training.epochs={config.max_epochs}",
        f"training.max_minutes={config.train_minutes}",
        "training.validation_interval=100000",  # validate after the last epoch only
        f"training.seed={config.seed}",
        # covseg's post-processing (the winners' recipe): a briefly trained network's stray
        # voxels outside the lungs and specks are most of its errors.
        "postprocess.outside_lung=true",
        "postprocess.min_component_ml=0.5",
    ]
    return apply_overrides(load_preset("baseline"), overrides), overrides


def needed_bytes(config: DemoConfig) -> int:
    """A generous bound on the disk the run writes (uncompressed sizes, plus plots and model)."""
    from covseg.demo.teams import TEAMS
    from covseg.phantom import DEFAULT_COVERAGE_MM, SOURCES

    slices = {s: int(round(DEFAULT_COVERAGE_MM / spec.spacing[2])) for s, spec in SOURCES.items()}
    plane = config.size**2
    n_a = config.n_train + config.n_validation + config.n_test_seen
    data = 4 * plane * (n_a * slices["A"] + config.n_test_unseen * slices["B"])
    test = plane * (config.n_test_seen * slices["A"] + config.n_test_unseen * slices["B"])
    return data + (2 + len(TEAMS)) * test + 100_000_000
