# parallel/ benchmarks: collectives of our Communicator against MPI's own calls.
#   mpirun --allow-run-as-root --oversubscribe -n 4 build/bench/bench_collectives
if(TARGET seqmesh_parallel AND EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/collectives.cc)
  add_executable(bench_collectives collectives.cc)
  target_link_libraries(bench_collectives PRIVATE seqmesh_parallel)
endif()
