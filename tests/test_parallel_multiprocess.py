"""Two real processes on localhost (gloo collectives), two CPU devices each.

Checks the multi-host data flow end to end: start-up, the process's shard of the data,
global arrays from local batches, host gathers, and a gradient under FSDP sharding that
must equal the one computed here on a single process; then the same with the processes'
devices interleaved on the data axis, as on a TPU slice.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

ROOT = Path(__file__).resolve().parents[1]

WORKER = textwrap.dedent(
    """
    import json, sys
    import jax
    jax.config.update("jax_num_cpu_devices", 2)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    import jax.numpy as jnp
    import numpy as np
    from rnnlab import parallel

    port, pid, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    active = parallel.initialize(f"127.0.0.1:{port}", 2, pid)
    result = {"active": active, "again": parallel.initialize(),
              "count": parallel.process_count(), "main": parallel.is_main_process(),
              "devices": jax.device_count(),
              "any_mixed": parallel.any_process(pid == 1),
              "any_none": parallel.any_process(False)}

    full = np.arange(8 * 4, dtype=np.float32).reshape(8, 4) / 10
    for name, axes in (("data", {"data": -1, "fsdp": 2}), ("model", {"model": 2, "data": 2})):
        mesh = parallel.make_mesh(axes)
        rows = parallel.local_batch_size(8, mesh)
        index, count = parallel.process_data_shard(mesh)
        local = full[index * rows:(index + 1) * rows]
        batch = parallel.global_batch({"x": local}, mesh)
        result[name] = {"rows": rows, "shard": [index, count],
                        "host": parallel.to_host(batch)["x"].tolist()}

    mesh = parallel.make_mesh({"data": -1, "fsdp": 2})
    rules = parallel.fsdp_rules(min_dim=2)
    w = jnp.asarray(np.linspace(-1, 1, 4 * 6, dtype=np.float32).reshape(4, 6))
    w_sh = parallel.param_shardings(w, mesh, rules)
    w = jax.device_put(w, w_sh)
    rows = parallel.local_batch_size(8, mesh)
    index, _ = parallel.process_data_shard(mesh)
    batch = parallel.global_batch({"x": full[index * rows:(index + 1) * rows]}, mesh)
    loss = lambda w, b: jnp.mean(jnp.tanh(b["x"] @ w) ** 2)
    step = jax.jit(jax.value_and_grad(loss),
                   in_shardings=(w_sh, parallel.data_sharding(mesh)),
                   out_shardings=(parallel.replicated(mesh), w_sh))
    value, grad = step(w, batch)
    result["w_spec"] = str(w_sh.spec)
    result["loss"] = float(parallel.to_host(value))
    result["grad"] = parallel.to_host(grad).tolist()

    # A TPU slice's device order: a process's devices are not neighbours on the data axis
    # (process 0 holds batch shards 0 and 2, process 1 shards 1 and 3).
    mine = {}
    for d in jax.devices():
        mine.setdefault(d.process_index, []).append(d)
    interleaved = [mine[p][i] for i in range(2) for p in sorted(mine)]
    mesh = parallel.make_mesh({"data": -1}, interleaved)
    rows = parallel.local_batch_size(8, mesh)
    index, count = parallel.process_data_shard(mesh)
    batch = parallel.global_batch({"x": full[index * rows:(index + 1) * rows]}, mesh)
    whole = parallel.replicated(mesh)
    w = jax.device_put(jnp.asarray(np.linspace(-1, 1, 24, dtype=np.float32).reshape(4, 6)), whole)
    step = jax.jit(jax.value_and_grad(loss), in_shardings=(whole, parallel.data_sharding(mesh)),
                   out_shardings=(whole, whole))
    value, grad = step(w, batch)
    result["interleaved"] = {"shard": [index, count], "rows": rows,
                             "global_rows": parallel.process_rows(mesh, 8).tolist(),
                             "host": parallel.to_host(batch)["x"].tolist(),
                             "loss": float(parallel.to_host(value)),
                             "grad": parallel.to_host(grad).tolist()}
    with open(out, "w") as f:
        json.dump(result, f)
    """
)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_build_global_batches_and_gradients(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    for name in ("RNNLAB_COORDINATOR", "RNNLAB_NUM_PROCESSES", "RNNLAB_PROCESS_ID"):
        env.pop(name, None)
    port = _free_port()
    outs = [tmp_path / f"out{i}.json" for i in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(port), str(i), str(outs[i])],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    logs = []
    for proc in procs:
        try:
            logs.append(proc.communicate(timeout=120)[0])
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            pytest.fail("worker processes did not finish within 120 s")
    for i, proc in enumerate(procs):
        assert proc.returncode == 0, f"process {i} failed:\n{logs[i][-3000:]}"
    results = [json.loads(out.read_text()) for out in outs]

    full = np.arange(8 * 4, dtype=np.float32).reshape(8, 4) / 10
    w = np.linspace(-1, 1, 4 * 6, dtype=np.float32).reshape(4, 6).astype(np.float64)
    # Closed-form gradient of mean(tanh(x w)^2) over all 8 x 6 outputs.
    y = np.tanh(full.astype(np.float64) @ w)
    want_loss = np.mean(y**2)
    want_grad = full.T.astype(np.float64) @ (2 * y * (1 - y**2)) / y.size

    for pid, r in enumerate(results):
        assert r["active"] and r["again"]
        assert r["any_mixed"] is True and r["any_none"] is False
        assert r["count"] == 2 and r["devices"] == 4 and r["main"] == (pid == 0)
        # Data axes span both hosts: each process reads half the batch.
        assert r["data"]["rows"] == 4 and r["data"]["shard"] == [pid, 2]
        # "model" spans the hosts, "data" stays inside each: both read the whole batch.
        assert r["model"]["rows"] == 8 and r["model"]["shard"] == [0, 1]
        np.testing.assert_array_equal(r["data"]["host"], full)
        np.testing.assert_array_equal(r["model"]["host"], full)
        assert r["w_spec"] == str(P(None, "fsdp"))
        np.testing.assert_allclose(r["loss"], want_loss, rtol=1e-5)
        np.testing.assert_allclose(r["grad"], want_grad, rtol=1e-4, atol=1e-6)
        # Interleaved devices: each process still reads its own half of the data, which
        # lands on the rows of its devices (mesh position k holds rows 2k and 2k + 1), and
        # the loss and gradient are those of the contiguous layout.
        inter = r["interleaved"]
        assert inter["shard"] == [pid, 2] and inter["rows"] == 4
        assert inter["global_rows"] == [[0, 1, 4, 5], [2, 3, 6, 7]][pid]
        host = np.asarray(inter["host"])
        for p in range(2):
            np.testing.assert_array_equal(
                host[results[p]["interleaved"]["global_rows"]], full[4 * p : 4 * p + 4]
            )
        np.testing.assert_allclose(inter["loss"], want_loss, rtol=1e-5)
        np.testing.assert_allclose(inter["grad"], want_grad, rtol=1e-4, atol=1e-6)
