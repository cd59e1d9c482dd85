"""``rnnlab-kernels`` builds from source in a fresh venv, imports, and runs a step right.

The fresh venv sees the test environment's packages (jax, scikit-build-core, pip) through a
``.pth`` file, as a venv with system site packages would, so nothing is downloaded; the
package is built without build isolation, as ``make kernels`` does. Where no C++ compiler
or no scikit-build-core is present the test is reported as not applicable, naming which.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPILERS = [os.environ.get("CXX", "c++"), "g++", "clang++"]


def _missing() -> str | None:
    if not any(shutil.which(c) for c in COMPILERS):
        return f"no C++ compiler ({', '.join(COMPILERS)} not found)"
    if importlib.util.find_spec("scikit_build_core") is None:
        return "scikit-build-core is not installed (pip install -e '.[kernels]')"
    return None


# A forward step of the kernel against NumPy, run inside the fresh venv.
CHECK = """
import numpy as np, jax.numpy as jnp, rnnlab_kernels
from rnnlab.fused import kernel
assert kernel.available(), kernel.unavailable_reason()
print(rnnlab_kernels.library_path())
rng = np.random.default_rng(0)
B, H, I = 3, 7, 2
x = rng.normal(size=(1, B, I)).astype(np.float32)
w_ih, w_hh = (rng.normal(size=(n, 4 * H)).astype(np.float32) for n in (I, H))
b = rng.normal(size=(4 * H,)).astype(np.float32)
c0, h0 = (rng.normal(size=(B, H)).astype(np.float32) for _ in range(2))
acts, cs, hs, rows, c1, h1 = kernel.lstm_forward(
    jnp.asarray(x), tuple(map(jnp.asarray, (w_ih, w_hh, b))), jnp.asarray(c0),
    jnp.asarray(h0), None, None, (None, None), None, None)
z = x[0].astype(np.float64) @ w_ih + h0 @ w_hh + b
sig = lambda a: 1 / (1 + np.exp(-a))
i, f, g, o = sig(z[:, :H]), sig(z[:, H:2*H]), np.tanh(z[:, 2*H:3*H]), sig(z[:, 3*H:])
c = f * c0 + i * g
np.testing.assert_allclose(c1, c, rtol=1e-5, atol=1e-5)
np.testing.assert_allclose(h1, o * np.tanh(c), rtol=1e-5, atol=1e-5)
"""


@pytest.mark.skipif(_missing() is not None, reason=f"not applicable: {_missing()}")
def test_kernels_build_and_import_in_a_fresh_venv(tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # After the venv's own site-packages: the fresh build shadows any installed copy.
    Path(site, "parent.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    env.pop("RNNLAB_KERNELS_LIBRARY", None)
    env.pop("RNNLAB_KERNELS", None)
    build = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--no-build-isolation", "--no-deps",
         "--no-index", str(ROOT / "kernels")],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout + build.stderr
    run = subprocess.run(
        [python, "-c", CHECK], capture_output=True, text=True, env=env, timeout=300
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.strip().startswith(site), run.stdout
