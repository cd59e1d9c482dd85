"""Recurrent cells: Flax NNX modules over pure gate maths."""

from rnnlab.cells import initializers
from rnnlab.cells.base import RecurrentCell
from rnnlab.cells.batchnorm import BNLSTMCell
from rnnlab.cells.conv_lstm import ConvLSTMCell
from rnnlab.cells.griffin import HawkCell, RGLRUCell
from rnnlab.cells.gru import GRUCell, gru_project, gru_step
from rnnlab.cells.indrnn import IndRNNCell
from rnnlab.cells.layernorm import LayerNormGRUCell, LayerNormLSTMCell
from rnnlab.cells.linear import LinearRecurrentCell, LRUCell, MinGRUCell, MinLSTMCell
from rnnlab.cells.lstm import LSTMCell, lstm_project, lstm_step
from rnnlab.cells.mamba import S6Cell
from rnnlab.cells.orthogonal import OrthogonalCell
from rnnlab.cells.registry import cell_names, make_cell, register_cell
from rnnlab.cells.simple import SimpleCell, simple_project, simple_step
from rnnlab.cells.xlstm import MLSTMCell, SLSTMCell

__all__ = [
    "BNLSTMCell",
    "ConvLSTMCell",
    "HawkCell",
    "IndRNNCell",
    "LRUCell",
    "LayerNormGRUCell",
    "LayerNormLSTMCell",
    "LinearRecurrentCell",
    "MLSTMCell",
    "MinGRUCell",
    "MinLSTMCell",
    "OrthogonalCell",
    "RGLRUCell",
    "S6Cell",
    "SLSTMCell",
    "GRUCell",
    "LSTMCell",
    "RecurrentCell",
    "SimpleCell",
    "gru_project",
    "gru_step",
    "cell_names",
    "initializers",
    "lstm_project",
    "lstm_step",
    "make_cell",
    "register_cell",
    "simple_project",
    "simple_step",
]
