// The small cost model the planner and refit tests share: 4 layers, attention dominating past a
// few thousand tokens, ring transfers hidden beyond a few hundred.
#pragma once

#include "scheduler/cost_model.h"

namespace seqmesh::scheduler {

inline CostModel TestCost() {
  CostModel m;
  m.layers_per_rank = 4;
  m.a1 = 4e-8;
  m.b1 = 1.5e-3;
  m.g = 0.01;
  m.a2 = 100;
  m.kv_bytes_per_token = 12288;
  m.p2p_gbps = 67;
  m.d2h_gbps = m.h2d_gbps = 25;
  return m;
}

}  // namespace seqmesh::scheduler
