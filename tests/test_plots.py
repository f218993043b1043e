import numpy as np
import pytest

from otalign import plots


def test_figures_are_written(tmp_path):
    target = np.eye(4)[[1, 0, 3, 2]]
    paths = [
        plots.loss_curves({"a": [[3.0, 2.0, 1.5], [3.1, 2.2, 1.4]], "b": [[1.0, 0.5, 0.4]]}, tmp_path / "loss.png"),
        plots.plan_and_target(np.full((4, 4), 0.25), target, tmp_path / "plan.png", title="one batch"),
        plots.plan_grid({"x": np.ones((4, 4)), "y": target}, target, tmp_path / "grid.png"),
        plots.accuracy_bars({"clean": {"m": [0.8, 0.9]}, "noisy": {"m": [0.7]}}, tmp_path / "acc.png", reference=0.5),
    ]
    for path in paths:
        assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_inputs_name_the_argument(tmp_path):
    with pytest.raises(ValueError, match="plan, target"):
        plots.plan_and_target(np.ones((3, 4)), np.ones((4, 4)), tmp_path / "p.png")
    with pytest.raises(ValueError, match="plans"):
        plots.plan_grid({"x": np.ones((3, 3))}, np.ones((4, 4)), tmp_path / "g.png")
    with pytest.raises(ValueError, match="curves"):
        plots.loss_curves({}, tmp_path / "l.png")
    with pytest.raises(ValueError, match="scores"):
        plots.accuracy_bars({}, tmp_path / "a.png")


def test_target_and_learned_plans_share_one_colour_scale():
    from matplotlib.colors import LogNorm

    target = np.eye(4)[[1, 0, 3, 2]]
    learned = {"a": np.full((4, 4), 0.25), "b": np.array([[0.1, 0.7, 0.1, 0.1]] * 4)}
    figure = plots.plan_figure(learned, target)
    images = [ax.images[0] for ax in figure.axes if ax.images]
    assert len(images) == 3
    # the learned plans' largest entry 0.7 (one decade below it at least), not the one-hot target's 1.0, which
    # would squeeze the learned plans together
    for image in images:
        assert image.get_clim() == pytest.approx((0.07, 0.7))
    assert all(isinstance(image.norm, LogNorm) for image in images)


def test_shared_color_limits_and_row_normalisation():
    assert plots.shared_color_limits([np.array([[0.02, 0.0]]), np.array([[0.5]])]) == (0.02, 0.5)
    assert plots.shared_color_limits([np.array([[1.0, 1e-9]])]) == pytest.approx((1e-4, 1.0))  # 4 decades at most
    assert plots.shared_color_limits([np.array([[0.5, 0.5]])]) == (0.05, 0.5)  # at least one decade
    assert plots.shared_color_limits([np.zeros((2, 2))]) == (1e-4, 1.0)
    shown = plots.row_normalised(np.array([[1.0, 3.0], [0.0, 0.0]]))
    np.testing.assert_allclose(shown, [[0.25, 0.75], [0.0, 0.0]])
