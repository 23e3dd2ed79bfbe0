"""The networks a plan can name, built from its ``network`` section."""

from __future__ import annotations

from typing import Any

import torch


def build_network(plan: dict[str, Any]) -> torch.nn.Module:
    """The (untrained) network of ``plan``: 1 input channel (CT), ``out_channels`` logits.

    ``BasicUNet`` is the organizers' baseline; ``DynUNet`` is the nnU-Net-style network of the
    ``auto`` preset, its depth given by ``kernels``/``strides`` (deep supervision when
    ``deep_supervision`` > 0, training only).
    """
    from monai.networks.nets import BasicUNet, DynUNet

    net = plan["network"]
    dims = int(plan.get("dimensions", 3))
    if net["name"] == "BasicUNet":
        return BasicUNet(
            spatial_dims=dims,
            in_channels=1,
            out_channels=int(net["out_channels"]),
            features=tuple(net["features"]),
            dropout=float(net["dropout"]),
        )
    if net["name"] == "DynUNet":
        strides = [tuple(s) for s in net["strides"]]
        return DynUNet(
            spatial_dims=dims,
            in_channels=1,
            out_channels=int(net["out_channels"]),
            kernel_size=[tuple(k) for k in net["kernels"]],
            strides=strides,
            upsample_kernel_size=strides[1:],
            filters=list(net["filters"]),
            norm_name="instance",
            deep_supervision=int(net.get("deep_supervision", 0)) > 0,
            deep_supr_num=max(1, int(net.get("deep_supervision", 0))),
            res_block=bool(net.get("residual", False)),
        )
    raise ValueError(f"unknown network {net['name']!r} (BasicUNet or DynUNet)")
