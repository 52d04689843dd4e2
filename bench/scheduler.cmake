# Planner benchmarks (issue 5): planning speed at cluster scale.
if(TARGET seqmesh_scheduler)
  add_executable(plan_speed ${CMAKE_CURRENT_LIST_DIR}/plan_speed.cc)
  target_link_libraries(plan_speed PRIVATE seqmesh_scheduler)
endif()
if(TARGET seqmesh_scheduler)
  add_executable(plan_quality ${CMAKE_CURRENT_LIST_DIR}/plan_quality.cc)
  target_link_libraries(plan_quality PRIVATE seqmesh_scheduler)
endif()
