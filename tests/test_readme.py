"""The README's import example runs as printed and computes what it claims."""

import pathlib
import re

import jax.numpy as jnp
import numpy as np

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs_and_masks_padding():
    block = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    namespace: dict = {}
    exec(compile(block, str(README), "exec"), namespace)
    assert namespace["logits"].shape == (8, 20, 5)
    # The claim in the comment: outputs past each length are zero, so the tagger's logits
    # there reduce to the output layer's bias.
    tagger = namespace["Tagger"](namespace["nnx"].Rngs(0))
    logits = tagger(jnp.ones((2, 6, 16)), jnp.array([6, 3]))
    bias = np.asarray(tagger.out.bias[...])
    np.testing.assert_allclose(np.asarray(logits[1, 3:]), np.broadcast_to(bias, (3, 5)), atol=1e-6)
