# parallel/ benchmarks: collectives of our Communicator against MPI's own calls.
#   mpirun --allow-run-as-root --oversubscribe -n 4 build/bench/bench_collectives
if(TARGET seqmesh_parallel AND EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/collectives.cc)
  add_executable(bench_collectives collectives.cc)
  target_link_libraries(bench_collectives PRIVATE seqmesh_parallel)
endif()
# How much of the bucketed gradient reduction backward hides.
#   OMP_NUM_THREADS=1 mpirun --allow-run-as-root --oversubscribe -n 2 build/bench/grad_overlap
if(TARGET seqmesh_parallel AND EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/grad_overlap.cc)
  add_executable(grad_overlap grad_overlap.cc)
  target_link_libraries(grad_overlap PRIVATE seqmesh_parallel)
endif()
