"""Devices and hosts: the `"data"` mesh, sharded chunked evaluation, multi-process start-up
and gathering. jit with shardings throughout; no pmap. (The traversal takes the mesh itself:
`lst_jax.traversal.level_set_traversal(..., mesh=data_mesh())`.)"""

from lst_jax.parallel.distributed import (ProcessFailure as ProcessFailure,
                                          add_distributed_args as add_distributed_args,
                                          barrier as barrier,
                                          broadcast_arrays_from_main as broadcast_arrays_from_main,
                                          broadcast_from_main as broadcast_from_main,
                                          gather_shares as gather_shares,
                                          initialize_distributed as initialize_distributed,
                                          initialize_from_args as initialize_from_args,
                                          is_main_process as is_main_process,
                                          pending_items as pending_items,
                                          process_share as process_share,
                                          raise_if_main_failed as raise_if_main_failed)
from lst_jax.parallel.evaluators import ShardedEvaluator as ShardedEvaluator
from lst_jax.parallel.gather import gather_rows as gather_rows, per_shard as per_shard
from lst_jax.parallel.mesh import (allgather_host as allgather_host,
                                   batch_sharding as batch_sharding, constrain as constrain,
                                   data_mesh as data_mesh,
                                   num_shards as num_shards, pad_to_multiple as pad_to_multiple,
                                   placed_sharding as placed_sharding,
                                   put_batch as put_batch, put_params as put_params,
                                   put_process_local as put_process_local,
                                   put_replicated as put_replicated, replicated as replicated,
                                   to_host as to_host, unpad as unpad)
from lst_jax.parallel.sharded import (MemoryEstimate as MemoryEstimate,
                                      estimate_memory as estimate_memory,
                                      parse_bytes as parse_bytes,
                                      plan_chunk_size as plan_chunk_size,
                                      sharded_apply as sharded_apply)
