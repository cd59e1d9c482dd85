"""Scale-out: device meshes, shardings, multi-host start-up and data flow.

Imports only jax and numpy. A trainer uses it in this order::

    from rnnlab import parallel

    parallel.initialize()                                  # multi-host when asked
    mesh = parallel.make_mesh({"data": -1, "fsdp": 1})     # from the config
    rules = parallel.fsdp_rules(min_dim=1024)
    abstract = jax.eval_shape(init_fn)                     # shapes, nothing allocated
    state_sh = parallel.param_shardings(abstract, mesh, rules)
    state = jax.jit(init_fn, out_shardings=state_sh)()     # born sharded
    local_bs = parallel.local_batch_size(global_bs, mesh)
    shard, num_shards = parallel.process_data_shard(mesh)  # which data this process reads
    batch = parallel.global_batch(local_numpy_batch, mesh)
    step = jax.jit(train_step, in_shardings=(state_sh, parallel.data_sharding(mesh)),
                   out_shardings=(state_sh, parallel.replicated(mesh)), donate_argnums=0)
    if parallel.is_main_process(): ...                     # logging, summaries

See docs/scaling.md.
"""

from rnnlab.parallel.batch import (
    global_batch,
    local_batch_size,
    process_data_shard,
    process_rows,
    to_host,
)
from rnnlab.parallel.distributed import (
    DistributedSettings,
    any_process,
    initialize,
    is_main_process,
    on_cloud_tpu_vm,
    process_count,
    process_index,
    resolve_settings,
)
from rnnlab.parallel.mesh import (
    DATA_AXES,
    check_axes,
    data_axes,
    data_parallel_size,
    data_sharding,
    make_mesh,
    mesh_shape,
    replicated,
)
from rnnlab.parallel.rules import (
    Rule,
    check_spec,
    fsdp_rules,
    fsdp_spec,
    param_shardings,
    partition_specs,
    path_to_str,
    spec_for,
)

# The time loop itself lives with the other time loops; named here too for mesh users.
from rnnlab.scan import sequence_parallel_linear_scan

__all__ = [
    "DATA_AXES",
    "DistributedSettings",
    "Rule",
    "any_process",
    "check_axes",
    "check_spec",
    "data_axes",
    "data_parallel_size",
    "data_sharding",
    "fsdp_rules",
    "fsdp_spec",
    "global_batch",
    "initialize",
    "is_main_process",
    "local_batch_size",
    "make_mesh",
    "mesh_shape",
    "on_cloud_tpu_vm",
    "param_shardings",
    "partition_specs",
    "path_to_str",
    "process_count",
    "process_data_shard",
    "process_index",
    "process_rows",
    "replicated",
    "resolve_settings",
    "sequence_parallel_linear_scan",
    "spec_for",
    "to_host",
]
