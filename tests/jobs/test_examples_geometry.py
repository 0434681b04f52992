"""Examples mode geometry (triangle planes, star paths, path widths) and figure rendering."""

import json

import numpy as np
import pytest

from lst_jax import cli
from lst_jax.plots import plot_star_paths, plot_triangles, plot_width_surfaces
from lst_jax.plots.common import new_figure, save_png


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_examples_cli_with_widths_writes_geometry(tmp_path):
    out = tmp_path / "ex"
    assert cli.main(["examples", "--k", "3", "--iters", "12", "--log-step", "4", "--widths",
                     "--width-dirs", "8", "--width-distances", "1", "4", "--path-points", "6",
                     "--quiet", "--out", str(out)]) == 0
    g = np.load(out / "geometry.npz")
    z = np.load(out / "examples.npz")
    np.testing.assert_array_equal(g["geometry_triangles"], [[1, 2]])  # K = 3: one triangle
    assert g["geometry_plane_conf"].shape == (1, 64)
    assert g["geometry_star_conf"].shape == (3, 3, 6)
    off = ~np.eye(3, dtype=bool)
    # Star paths end at the LST outputs, direct paths at the clean targets; both start at the
    # clean source.
    np.testing.assert_allclose(g["geometry_star_conf"][..., -1][off], z["conf"][off], atol=1e-5)
    np.testing.assert_allclose(g["geometry_star_conf"][..., 0][off],
                               np.broadcast_to(z["clean_conf"], (3, 3))[off], atol=1e-5)
    assert np.isnan(g["geometry_star_conf"][0, 0]).all()
    # Widths: pairs (0, 1) and (2, 0) fit K = 3; 3 logged points; radii 0, 1, 4.
    np.testing.assert_array_equal(g["geometry_width_pairs"], [[0, 1]])
    assert g["geometry_widths"].shape == (1, 3, 3, 2)
    np.testing.assert_array_equal(g["geometry_width_iters"], [0, 4, 8])
    w = g["geometry_widths"][g["geometry_width_mask"]]
    assert np.all(w[..., 0] <= w[..., 1] + 1e-7)
    for name in ("examples_grid", "curves", "plane_src-0", "star_paths", "path_widths"):
        assert _png_size(out / "figures" / f"{name}.png")[0] > 300
    summary = json.loads((out / "summary.json").read_text())
    assert summary["geometry"]["triangles"] == [[1, 2]]


def test_figures_have_the_expected_size(tmp_path):
    rng = np.random.default_rng(0)
    verts = np.array([[[0, 0], [1, 0], [0.4, 0.8]]] * 2, np.float32)
    from lst_jax.geometry import embed_grid, triangle_grid

    pts = np.stack([np.asarray(embed_grid(v, grid=triangle_grid())) for v in verts])
    conf = rng.random((2, 64)).astype(np.float32)
    imgs = rng.random((2, 3, 8, 8, 3)).astype(np.float32)
    p = plot_triangles(verts, pts, conf, imgs, tmp_path / "t.png", titles=["a", "b"])
    assert _png_size(p) == (int((3.2 * 2 + 0.9) * 100), int(3.2 * 100 + 10))
    t = np.linspace(0, 1, 5)
    star = rng.random((3, 3, 5))
    assert _png_size(plot_star_paths(t, star, star, tmp_path / "s.png")) == (900, 340)
    widths = rng.random((2, 4, 3, 2))
    widths[0, 1] = np.nan
    assert _png_size(plot_width_surfaces([0, 10, 20, 30], [0, 1, 2], widths,
                                         tmp_path / "w.png")) == (840, 420)


def test_figures_reject_bad_paths_and_malformed_inputs(tmp_path):
    fig = new_figure(2, 2)
    with pytest.raises(ValueError, match="must end in .png"):
        save_png(fig, tmp_path / "x.jpg")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        save_png(fig, tmp_path / "file" / "x.png")
    (tmp_path / "d.png").mkdir()
    with pytest.raises(ValueError, match="is a directory"):
        save_png(fig, tmp_path / "d.png")
    verts = np.zeros((1, 3, 2))
    with pytest.raises(ValueError, match="grid_coords"):
        plot_triangles(verts, np.zeros((1, 5, 3)), np.zeros((1, 5)), np.zeros((1, 3, 4, 4, 3)),
                       tmp_path / "t.png")
    with pytest.raises(ValueError, match="degenerate triangle"):
        plot_triangles(np.full((1, 3, 2), np.nan), np.zeros((1, 5, 2)), np.zeros((1, 5)),
                       np.zeros((1, 3, 4, 4, 3)), tmp_path / "t.png")
    with pytest.raises(ValueError, match="vertex_coords"):
        plot_triangles(np.zeros((0, 3, 2)), np.zeros((0, 5, 2)), np.zeros((0, 5)),
                       np.zeros((0, 3, 4, 4, 3)), tmp_path / "t.png")
    with pytest.raises(ValueError, match="to_outputs and to_targets"):
        plot_star_paths(np.arange(3), np.zeros((2, 3, 3)), np.zeros((2, 3, 3)),
                        tmp_path / "s.png")
    with pytest.raises(ValueError, match="widths must have shape"):
        plot_width_surfaces([0, 1], [0, 1], np.zeros((1, 3, 2, 2)), tmp_path / "w.png")
