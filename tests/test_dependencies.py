"""The declared dependency ranges: what other codebases see when they import the core.

- the core has lower bounds only, and ``requirements/lower.txt`` (what ``make test-lower``
  installs) is exactly those bounds;
- ``requirements/tested.txt`` pins every declared package, so ``make venv`` on a fresh
  clone installs tested versions and not the newest releases;
- dataset-only packages sit in the ``datasets`` extra, and nothing declared goes unused.
"""

import pathlib
import re
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
NAME = re.compile(r"^([A-Za-z0-9_.\-]+)")


def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path):
    out = {}
    for line in (ROOT / path).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            out[canonical(name)] = version
    return out


def test_core_has_lower_bounds_only_and_lower_txt_installs_exactly_them():
    lower = pins("requirements/lower.txt")
    for spec in PROJECT["dependencies"]:
        name = canonical(NAME.match(spec).group(1))
        assert "<" not in spec and "==" not in spec, f"upper bound or pin on the core: {spec}"
        bound = re.search(r">=\s*([0-9][^,;\s]*)", spec).group(1)
        have = lower[name]
        # 0.10 and 0.10.0 are the same release.
        pad = lambda v: (v.split(".") + ["0", "0"])[:3]
        assert pad(have) == pad(bound), f"{name}: lower.txt {have}, pyproject >= {bound}"
    assert lower["jaxlib"] == lower["jax"]  # jax pins its jaxlib


def test_tested_versions_cover_every_package_make_venv_installs():
    tested = pins("requirements/tested.txt")
    declared = list(PROJECT["dependencies"])
    # What `make venv` installs; compare's torch is the CPU build, pinned in pyproject.
    for extra in ("train", "datasets", "test"):
        declared += PROJECT["optional-dependencies"][extra]
    missing = [s for s in declared if canonical(NAME.match(s).group(1)) not in tested]
    assert not missing, f"not in requirements/tested.txt: {missing}"


def test_dataset_only_packages_have_their_own_extra_and_unused_ones_are_gone():
    extras = PROJECT["optional-dependencies"]
    names = lambda specs: {canonical(NAME.match(s).group(1)) for s in specs}
    dataset_only = {
        "sktime",
        "statsmodels",
        "scikit-learn",
        "sacrebleu",
        "mnist1d",
        "statsforecast",
        "librosa",
        "rdata",
        "sentencepiece",
    }
    assert names(extras["datasets"]) == dataset_only
    assert not names(extras["train"]) & dataset_only
    everything = names(PROJECT["dependencies"]).union(*map(names, extras.values()))
    assert not everything & {"absl-py", "psutil"}  # never imported by rnnlab


def test_make_installs_with_the_tested_constraints_and_the_datasets_extra():
    makefile = (ROOT / "Makefile").read_text()
    assert "-c $(TESTED)" in makefile and "datasets" in makefile
    assert "test-lower:" in makefile
    assert "make test-lower" in (ROOT / ".ci" / "run").read_text()
