"""Depth/normal metrics and plane-fit reference normals against analytic cases."""

import math

import pytest
import torch

from hpc_taskology.evaluation import depth_metrics, normal_metrics, normals_from_plane_fit

K = torch.tensor([[[50.0, 0, 29.5], [0, 50.0, 19.5], [0, 0, 1]]])


def plane_depth(normal, dist, h=40, w=60):
    """z-depth of the plane n·X = -dist (n facing the camera) seen through K."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    rays = torch.stack([(xs - 29.5) / 50, (ys - 19.5) / 50, torch.ones_like(xs)])
    return (-dist / (normal[:, None, None] * rays).sum(0))[None, None]


def test_plane_fit_recovers_a_tilted_plane():
    n = torch.tensor([0.3, -0.4, -1.0], dtype=torch.float64)
    n = n / n.norm()
    normals, valid = normals_from_plane_fit(plane_depth(n, 3.0), K.double())
    assert valid[0, 0, 3:-3, 3:-3].all()  # interior pixels have full windows
    err = (normals[0, :, valid[0, 0]] - n[:, None]).abs().max()
    assert err < 1e-6


def test_plane_fit_leaves_out_holes_and_edges():
    n = torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64)
    d = plane_depth(n, 2.0).clone()
    d[..., :, 30:] = 5.0            # a depth step: windows straddling it are not planar
    d[..., 10:30, 5:25] = 0.0       # a hole of missing measurements
    _, valid = normals_from_plane_fit(d, K.double())
    assert not valid[0, 0, 20, 15]          # inside the hole
    assert not valid[0, 0, 20, 29:31].any()  # on the step
    assert valid[0, 0, 20, 45] and valid[0, 0, 35, 10]


def test_plane_fit_rejects_even_window():
    with pytest.raises(ValueError, match="window must be odd"):
        normals_from_plane_fit(torch.ones(1, 1, 8, 8), K, window=4)


def test_depth_metrics_analytic():
    gt = torch.full((2, 1, 4, 4), 2.0)
    valid = torch.ones_like(gt, dtype=torch.bool)
    m = depth_metrics(1.5 * gt, gt, valid, median_scaling=False)
    assert m["abs_rel"] == pytest.approx(0.5) and m["rmse"] == pytest.approx(1.0)
    assert m["sq_rel"] == pytest.approx(0.5) and m["rmse_log"] == pytest.approx(math.log(1.5))
    assert m["delta1"] == 0.0 and m["delta2"] == 1.0  # 1.25 < 1.5 < 1.5625
    scaled = depth_metrics(1.5 * gt, gt, valid, median_scaling=True)
    assert scaled["abs_rel"] == pytest.approx(0.0, abs=1e-12) and scaled["delta1"] == 1.0


def test_depth_metrics_masks_invalid_and_out_of_range():
    gt = torch.tensor([[[[1.0, 2.0, 0.0, 50.0]]]])
    pred = torch.tensor([[[[1.0, 2.0, float("nan"), 3.0]]]])
    m = depth_metrics(pred, gt, gt > 0, median_scaling=False)
    assert m["n_pixels"] == 2 and m["abs_rel"] == 0.0


def test_normal_metrics_angles():
    gt = torch.zeros(1, 3, 1, 4)
    gt[:, 2] = -1
    pred = gt.clone()
    angle = torch.deg2rad(torch.tensor([0.0, 10.0, 20.0, 40.0]))
    pred[0, 0, 0] = torch.sin(angle)
    pred[0, 2, 0] = -torch.cos(angle)
    m = normal_metrics(pred, gt, torch.ones(1, 1, 1, 4, dtype=torch.bool))
    assert m["mean_deg"] == pytest.approx(17.5, abs=1e-4)
    assert m["within_11.25"] == 0.5 and m["within_22.5"] == 0.75 and m["within_30"] == 0.75
