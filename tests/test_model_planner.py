"""The auto presets: plans derived from the dataset fingerprint, nnU-Net style."""

import pytest
import torch

from covseg.model.networks import build_network
from covseg.model.planner import memory_gb, plan_from_fingerprint

FULL_CT = {
    "median_spacing_mm": [0.74, 0.74, 5.0],
    "median_shape": [512, 512, 70],
    "foreground_hu": {
        "mean": -420.0,
        "std": 210.0,
        "percentile_00_5": -880.0,
        "percentile_99_5": 90.0,
    },
}


def test_plan_follows_the_fingerprint() -> None:
    plan = plan_from_fingerprint(FULL_CT, gpu_memory_gb=8.0)
    assert plan["preprocessing"]["spacing_mm"] == [0.74, 0.74, 5.0]
    assert plan["preprocessing"]["intensity"] == {
        "kind": "zscore",
        "clip_min": -880.0,
        "clip_max": 90.0,
        "mean": -420.0,
        "std": 210.0,
    }
    patch = plan["inference"]["roi_size"]
    assert patch == plan["augmentation"]["crop_size"]
    assert memory_gb(patch, plan["training"]["batch_size"]) <= 8.0
    net = plan["network"]
    # Thick slices: in-plane-only kernels and strides until the in-plane spacing catches up.
    assert net["kernels"][0] == [3, 3, 1] and net["strides"][1] == [2, 2, 1]
    assert len(net["kernels"]) == len(net["strides"]) == len(net["filters"])
    assert plan["postprocess"]["outside_lung"] is True
    assert plan["inference"]["resample"] == "probabilities"  # nnU-Net's way back to the scan


def test_a_smaller_budget_gives_a_smaller_patch_and_a_shallower_net() -> None:
    big = plan_from_fingerprint(FULL_CT, gpu_memory_gb=8.0)
    small = plan_from_fingerprint(FULL_CT, gpu_memory_gb=0.5)
    assert (
        torch.tensor(small["inference"]["roi_size"]).prod()
        < torch.tensor(big["inference"]["roi_size"]).prod()
    )
    assert len(small["network"]["strides"]) <= len(big["network"]["strides"])


def test_2d_variant_and_networks_build() -> None:
    tiny = {**FULL_CT, "median_spacing_mm": [6.0, 6.0, 5.0], "median_shape": [32, 32, 16]}
    plan2d = plan_from_fingerprint(tiny, variant="2d")
    assert plan2d["inference"]["roi_size"][2] == 1
    assert all(k[2] == 1 for k in plan2d["network"]["kernels"])
    for plan in (plan_from_fingerprint(tiny), plan2d):
        net = build_network(plan).eval()
        out = net(torch.zeros(1, 1, *plan["inference"]["roi_size"]))
        assert out.shape == (1, 2, *plan["inference"]["roi_size"])
    with pytest.raises(ValueError, match="no lesion voxels"):
        plan_from_fingerprint({**FULL_CT, "foreground_hu": {"n": 0, "std": None}})


def test_auto_2d_is_a_plan_of_the_volume_pipeline() -> None:
    from covseg.model.plan import pipeline_of

    # One-slice patches of volumes, on the volume model grid: not the slices-2d pipeline.
    assert pipeline_of(plan_from_fingerprint(FULL_CT, "2d")) == "volume"
    assert pipeline_of(plan_from_fingerprint(FULL_CT, "3d")) == "volume"
