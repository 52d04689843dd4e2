# offload/ benchmarks (issue 14; the offload notes' section 5):
#   bench/ssd_vs_fio.sh /var/tmp/seqmesh-bench   the SSD engine against fio on the same file system
#   build/bench/offload_memory    peak RSS and VmLck of an offloaded AdamW step, per staging
#   build/bench/offload_overlap   read || update || write against I/O-only and compute-only runs
#   bench/offload_headline.sh     a model twice the memory cgroup's limit, bitwise the in-memory run
if(TARGET seqmesh_offload)
  add_executable(ssd_engine_bench ${CMAKE_CURRENT_LIST_DIR}/ssd_engine.cc)
  set_target_properties(ssd_engine_bench PROPERTIES OUTPUT_NAME ssd_engine)
  target_link_libraries(ssd_engine_bench PRIVATE seqmesh_offload)
  add_executable(offload_memory ${CMAKE_CURRENT_LIST_DIR}/offload_memory.cc)
  target_link_libraries(offload_memory PRIVATE seqmesh_offload)
  add_executable(offload_overlap ${CMAKE_CURRENT_LIST_DIR}/offload_overlap.cc)
  target_link_libraries(offload_overlap PRIVATE seqmesh_offload)
endif()
