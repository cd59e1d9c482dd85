"""The plotting entry points take exactly what the diagnostics compute, and check shapes."""

import doctest

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import rnnlab
from rnnlab import diagnostics
from rnnlab.diagnostics import plots

PNG = b"\x89PNG\r\n\x1a\n"


def is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == PNG


def test_docstring_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    finder = doctest.DocTestFinder()
    (test,) = finder.find(plots.plot_jacobian_spectra, "plot_jacobian_spectra", globs={})
    test.examples[-1].source = test.examples[-1].source.replace("/tmp/", str(tmp_path) + "/")
    test.examples[-1].want = test.examples[-1].want.replace("/tmp/", str(tmp_path) + "/")
    result = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS).run(test)
    assert result.failed == 0 and result.attempted == len(test.examples)
    assert is_png(tmp_path / "spectrum.png")


def test_batched_spectra_of_a_cell_and_of_a_model_plot_as_returned(tmp_path):
    cell = rnnlab.GRUCell(3, 5, rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 9, 3)), jnp.float32)
    sv = diagnostics.cell_jacobian_spectrum(cell, x)
    assert sv.shape == (4, 9, 5)
    model = rnnlab.StackedRNN(3, 5, 2, cell="lstm", rngs=nnx.Rngs(1))
    spectra = diagnostics.jacobian_spectra(model, lambda m: m(x), top_k=3)
    assert all(v.shape == (4, 9, 3) for v in spectra.values())
    out = diagnostics.plot_jacobian_spectra({"gru": sv, **spectra}, str(tmp_path / "a.png"))
    assert is_png(out)
    # One [T, k] spectrum (a batch mean, say) still plots, as does [*batch, T, k].
    assert is_png(diagnostics.plot_jacobian_spectra({"m": sv.mean(0)}, str(tmp_path / "b.png")))
    assert is_png(
        diagnostics.plot_jacobian_spectra({"m": sv.reshape(2, 2, 9, 5)}, str(tmp_path / "c.png"))
    )


@pytest.mark.parametrize(
    "spectra, match",
    [
        ({}, "spectra is empty"),
        ({"a": np.ones(9)}, r"spectra\['a'\] must be \[T, k\] or \[\*batch, T, k\].*\(9,\)"),
        ({"a": np.ones((2, 0, 3))}, "must be"),
        ({"a": np.ones((2, 9, 3)), "b": np.ones((2, 8, 3))}, "share the number of time steps"),
        ({"a": -np.ones((9, 3))}, "negative"),
    ],
)
def test_bad_spectra_are_refused_with_the_shape_named(tmp_path, spectra, match):
    with pytest.raises(ValueError, match=match):
        diagnostics.plot_jacobian_spectra(spectra, str(tmp_path / "x.png"))


def test_bad_band_is_refused(tmp_path):
    with pytest.raises(ValueError, match="band"):
        diagnostics.plot_jacobian_spectra(
            {"a": np.ones((9, 3))}, str(tmp_path / "x.png"), band=(90, 10)
        )
