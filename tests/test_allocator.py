"""The command's host-memory policy: freed memory stays mapped under it and goes back to the
kernel without it, measured on the process's resident set; the switches that turn it off."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="the policy is glibc's mallopt; elsewhere it reports 'unsupported'",
)

# Allocates and touches 256 MiB with malloc, frees it, and reports the resident set before
# the allocation, while it is held and after the free (from /proc/self/statm).
PROBE = r"""
import ctypes, json, os
from rnnlab.train import allocator
policy = allocator.keep_freed_memory()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = (ctypes.c_void_p,)
page = os.sysconf("SC_PAGE_SIZE")
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * page / 2**20
size = 256 * 2**20
before = rss()
p = libc.malloc(size)
ctypes.memset(p, 1, size)
held = rss()
libc.free(p)
print(json.dumps({"policy": policy, "before": before, "held": held, "after": rss()}))
"""


def _probe(**env_overrides):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.pop("GLIBC_TUNABLES", None)
    env.pop("RNNLAB_MALLOC", None)
    env.update(env_overrides)
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_freed_memory_stays_mapped_under_the_policy_and_returns_without_it():
    kept = _probe()
    assert kept["policy"] == "kept"
    assert kept["held"] - kept["before"] > 200  # the block was touched
    assert kept["held"] - kept["after"] < 16  # freed, but kept for the next step
    default = _probe(RNNLAB_MALLOC="default")
    assert default["policy"] == "off"
    assert default["held"] - default["after"] > 200  # glibc unmapped it at once


def test_the_users_own_glibc_settings_win():
    assert _probe(MALLOC_TRIM_THRESHOLD_="0")["policy"] == "user"
    assert _probe(GLIBC_TUNABLES="glibc.malloc.trim_threshold=0")["policy"] == "user"
