"""The diagnostics' figures name every line they draw, and take what the docs pass them."""

import numpy as np

from rnnlab import diagnostics
from rnnlab.diagnostics import plots
from rnnlab.diagnostics.probes import GradientFlow


def _capture(monkeypatch):
    made = []
    figure = plots._figure

    def keep(*args, **kwargs):
        fig, ax = figure(*args, **kwargs)
        made.append(ax)
        return fig, ax

    monkeypatch.setattr(plots, "_figure", keep)
    return made


def test_gradient_flow_plots_what_hidden_state_gradients_returns(tmp_path, monkeypatch):
    made = _capture(monkeypatch)
    # [B=2, T=2]: the norm over the batch at each step.
    flow = GradientFlow(per_example={"layers/0": np.array([[3.0, 0.0], [4.0, 1.0]])}, loss=1.0)
    two = GradientFlow(
        per_example={"layers/0": np.ones((2, 3)), "layers/1": np.ones((2, 3))}, loss=1.0
    )
    diagnostics.plot_gradient_flow({"lstm": flow, "gru": two}, str(tmp_path / "flow.png"))
    (ax,) = made
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["lstm", "gru layers/0", "gru layers/1"]
    # ||(3, 4)|| = 5 and ||(0, 1)|| = 1, by hand.
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), [5.0, 1.0])


def test_jacobian_legend_names_the_largest_and_the_smallest(tmp_path, monkeypatch):
    made = _capture(monkeypatch)
    sv = np.sort(np.random.default_rng(0).uniform(0.1, 2.0, (4, 6, 3)), axis=-1)[..., ::-1]
    diagnostics.plot_jacobian_spectra({"lstm": sv}, str(tmp_path / "s.png"))
    (ax,) = made
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == [
        "lstm: largest, median of 4 sequences",
        "lstm: smallest, median of 4 sequences",
    ]


def test_video_frames_carry_their_time(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rnnlab.tasks import video

    kept = []
    close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: (kept.append(fig), close(fig)))
    seen, future = np.zeros((1, 3, 4, 4, 1)), np.zeros((1, 2, 4, 4, 1))
    video._plot_frames(str(tmp_path), seen, future, future)
    fig = kept[-1]
    times = [ax.get_title(loc="right") for ax in fig.axes]
    assert times[:3] == ["t=1", "t=2", "t=3"]  # observed
    assert times[3:5] == ["t=4", "t=5"] and times[5] == ""  # true future; no third frame
    assert times[6:8] == ["t=4", "t=5"]  # predicted
