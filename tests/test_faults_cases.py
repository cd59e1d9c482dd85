"""In-process fault cases (tools.faults.cases): bad input to the library, bad configuration,
a full disk while saving, and untrusted files. Each bad call must raise the stated error
with a message that names what is wrong; no loader may run a pickle."""

import re
from pathlib import Path

import pytest

import rnnlab
from tools.faults import cases, cases_trust


@pytest.mark.parametrize(
    "case",
    cases.BAD_INPUT + cases.BAD_CONFIG + cases.DISK + cases_trust.TRUST,
    ids=lambda c: c.name,
)
def test_bad_call_raises_naming_what_is_wrong(case, tmp_path):
    with pytest.raises(case.error) as info:
        case.call(tmp_path)
    assert re.search(case.pattern, str(info.value)), str(info.value)


def test_no_loader_in_the_package_can_unpickle():
    assert cases.unsafe_loader_calls(Path(rnnlab.__file__).parent) == []


def test_the_scan_finds_unsafe_loaders(tmp_path):
    """The scan itself must be able to fail: it flags each unsafe form once."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "bad.py").write_text(
        "import pickle, numpy as np, torch\n"
        "a = pickle.load(open('f', 'rb'))\n"
        "b = np.load('x.npy', allow_pickle=True)\n"
        "c = torch.load('w.pt')\n"
        "d = torch.load('w.pt', weights_only=True)\n"
        "# pickle.loads(data) in a comment is fine\n"
    )
    hits = cases.unsafe_loader_calls(pkg)
    assert [int(h.split(":")[1]) for h in hits] == [2, 3, 4]


@pytest.mark.parametrize("replace", [False, True], ids=["pickles beside", "pickles instead"])
def test_planted_pickles_are_never_run(replace, tmp_path):
    safe, outcome = cases.malicious_checkpoint(tmp_path, replace=replace)
    assert safe, outcome


def test_write_errors_are_one_short_line_that_keeps_the_reason():
    """orbax's disk-full error: several lines and kilobytes of tensorstore JSON; the
    reason (here only as an os_error_code) must survive the shortening."""
    from rnnlab.train.checkpoint import describe_error

    spec = "{" + '\\"driver\\":\\"zarr\\",' * 300 + "}"
    message = (
        f'RESOURCE_EXHAUSTED: Error writing "params.head.bias/0"\n  in OCDBT database'
        f" [tensorstore_spec='{spec}'] [os_error_code='28']"
    )
    text = describe_error(ValueError(message))
    assert "\n" not in text and len(text) < 500
    assert text.startswith("ValueError: RESOURCE_EXHAUSTED: Error writing")
    assert "No space left on device" in text and "zarr" not in text
    short = describe_error(OSError(28, "No space left on device"))
    assert short == "OSError: [Errno 28] No space left on device"
