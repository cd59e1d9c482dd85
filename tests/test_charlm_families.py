"""experiments/charlm_families.py: every family's language model has the parameter count its
cell equations give at the chosen width, and all are within 5 % of the LSTM's (the rows of
the results table compare the families at equal parameter count)."""

import math

import pytest

from experiments import charlm_families as cf

V, E = 82, cf.EMBED  # Austen's character vocabulary, the embedding width


def _lm(cell: int, out: int) -> int:
    """Embedding ``V x E``, the cell, a decoder ``out x V`` with its bias."""
    return V * E + cell + out * V + V


# Each cell's parameters from its paper's equations, by the shapes of their matrices.
def _lstm(h: int) -> int:
    # [i, f, g, o] = x W + h U + b  (Hochreiter & Schmidhuber 1997)
    return 4 * h * E + 4 * h * h + 4 * h


def _gru(h: int) -> int:
    # r, z, n from x W + b_i and h U + b_h (Cho et al. 2014, with both biases as cuDNN)
    return 3 * h * E + 3 * h * h + 3 * h + 3 * h


def _hawk(h: int, heads: int) -> int:
    # De et al. 2024, fig. 2: GeLU branch x W_y + b and conv branch x W_x + b (E -> H),
    # a width-4 depthwise convolution with bias, the RG-LRU's two block-diagonal gates
    # (heads blocks of (H/heads)^2, with biases) and its decay Lambda, the output H -> H.
    block = h // heads
    branches = 2 * (E * h + h)
    conv = 4 * h + h
    gates = 2 * (heads * block * block + h)
    return branches + conv + gates + h + (h * h + h)


def _slstm(h: int, heads: int) -> int:
    # Beck et al. 2024: z, i, f, o from x W (E -> 4H), a block-diagonal recurrent R per head
    # (heads blocks of d x 4d) and a bias 4H.
    d = h // heads
    return E * 4 * h + heads * d * 4 * d + 4 * h


def _mlstm(h: int, heads: int) -> int:
    # Beck et al. 2024: q, k, v (E -> 3H, no bias), scalar input and forget gates per head
    # (E -> 2 heads, with bias), output gate (E -> H, with bias).
    return E * 3 * h + (E * 2 * heads + 2 * heads) + (E * h + h)


def _s6(d: int, n: int) -> int:
    # Gu & Dao 2023, algorithm 2: u = x W_in (E -> D), [Delta_low, B, C] = u W_x
    # (D -> R + 2N), Delta = softplus(Delta_low W_dt + b_dt) (R -> D), A (D x N), skip D.
    r = math.ceil(d / 16)
    return E * d + d * (r + 2 * n) + (r * d + d) + d * n + d


def _expected(family: str) -> int:
    spec = cf.FAMILIES[family]
    h, kw = spec["hidden"], spec["kwargs"]
    cell = {
        "lstm": lambda: _lstm(h),
        "gru": lambda: _gru(h),
        "hawk": lambda: _hawk(h, kw["num_heads"]),
        "slstm": lambda: _slstm(h, kw["num_heads"]),
        "mlstm": lambda: _mlstm(h, kw["num_heads"]),
        "s6": lambda: _s6(h, kw["state_size"]),
    }[family]()
    return _lm(cell, h)


@pytest.mark.parametrize("family", sorted(cf.FAMILIES))
def test_built_model_has_the_parameters_of_its_cell_equations(family):
    assert cf.parameter_count(family, V) == _expected(family)


def test_families_have_equal_parameter_counts_within_five_percent():
    lstm = _expected("lstm")
    assert lstm == 114_642  # an LSTM 1 x 128 between the main job's embedding and decoder
    for family in cf.FAMILIES:
        assert abs(_expected(family) / lstm - 1) < 0.05, family


def test_variant_names_a_family_and_the_smoke_run_shrinks_it():
    config = cf.get_config("mlstm,small")
    assert config.model.cell == "mlstm" and config.model.hidden_features == cf.SMALL_HIDDEN
    assert config.train.steps < 100
    assert cf.get_config("").model.cell == "lstm"
    with pytest.raises(ValueError, match="charlm_families variant must be"):
        cf.get_config("mamba")
