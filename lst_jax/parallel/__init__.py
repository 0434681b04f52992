"""Devices and hosts: the `"data"` mesh, sharded chunked evaluation, multi-process start-up
and gathering. jit with shardings throughout; no pmap. (The traversal takes the mesh itself:
`lst_jax.traversal.level_set_traversal(..., mesh=data_mesh())`.)"""

from lst_jax.parallel.distributed import ProcessFailure as ProcessFailure
from lst_jax.parallel.distributed import add_distributed_args as add_distributed_args
from lst_jax.parallel.distributed import barrier as barrier
from lst_jax.parallel.distributed import broadcast_arrays_from_main as broadcast_arrays_from_main
from lst_jax.parallel.distributed import broadcast_from_main as broadcast_from_main
from lst_jax.parallel.distributed import gather_shares as gather_shares
from lst_jax.parallel.distributed import initialize_distributed as initialize_distributed
from lst_jax.parallel.distributed import initialize_from_args as initialize_from_args
from lst_jax.parallel.distributed import is_main_process as is_main_process
from lst_jax.parallel.distributed import pending_items as pending_items
from lst_jax.parallel.distributed import process_share as process_share
from lst_jax.parallel.distributed import raise_if_main_failed as raise_if_main_failed
from lst_jax.parallel.evaluators import ShardedEvaluator as ShardedEvaluator
from lst_jax.parallel.gather import gather_rows as gather_rows
from lst_jax.parallel.gather import per_shard as per_shard
from lst_jax.parallel.mesh import allgather_host as allgather_host
from lst_jax.parallel.mesh import batch_sharding as batch_sharding
from lst_jax.parallel.mesh import constrain as constrain
from lst_jax.parallel.mesh import data_mesh as data_mesh
from lst_jax.parallel.mesh import num_shards as num_shards
from lst_jax.parallel.mesh import pad_to_multiple as pad_to_multiple
from lst_jax.parallel.mesh import placed_sharding as placed_sharding
from lst_jax.parallel.mesh import put_batch as put_batch
from lst_jax.parallel.mesh import put_params as put_params
from lst_jax.parallel.mesh import put_process_local as put_process_local
from lst_jax.parallel.mesh import put_replicated as put_replicated
from lst_jax.parallel.mesh import replicated as replicated
from lst_jax.parallel.mesh import to_host as to_host
from lst_jax.parallel.mesh import unpad as unpad
from lst_jax.parallel.sharded import MemoryEstimate as MemoryEstimate
from lst_jax.parallel.sharded import estimate_memory as estimate_memory
from lst_jax.parallel.sharded import parse_bytes as parse_bytes
from lst_jax.parallel.sharded import plan_chunk_size as plan_chunk_size
from lst_jax.parallel.sharded import sharded_apply as sharded_apply
