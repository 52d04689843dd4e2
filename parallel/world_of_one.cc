#include "parallel/world_of_one.h"

#include <cstring>

namespace seqmesh {

void WorldOfOne::ReduceScatter(const void* send, void* recv, int64_t recv_count, DType dtype) {
  if (send != recv) std::memmove(recv, send, recv_count * DTypeSize(dtype));
}

void WorldOfOne::AllGather(const void* send, void* recv, int64_t send_count, DType dtype) {
  if (send != recv) std::memmove(recv, send, send_count * DTypeSize(dtype));
}

void WorldOfOne::Broadcast(void*, int64_t, DType, int root) {
  SM_CHECK(root == 0) << "broadcast from rank " << root << " in a world of one rank";
}

CommWork WorldOfOne::StartReduceScatter(const void* send, void* recv, int64_t recv_count,
                                        DType dtype) {
  ReduceScatter(send, recv, recv_count, dtype);
  return {};
}

CommWork WorldOfOne::StartAllGather(const void* send, void* recv, int64_t send_count, DType dtype) {
  AllGather(send, recv, send_count, dtype);
  return {};
}

P2PGroup WorldOfOne::Start(std::span<const P2POp> ops) {
  SM_CHECK(ops.empty()) << "a world of one rank has no peer: point-to-point to rank "
                        << ops.front().peer << " is not possible";
  return {};
}

void NoRingLink::Post(int tag, const float*, int64_t, int to, float*, int64_t, int from) {
  SM_CHECK(false) << "a world of one rank cannot ring a sequence (ring exchange " << tag
                  << " to rank " << to << " from rank " << from
                  << "); plan it for one rank (scheduler/packed_plan.h)";
}

}  // namespace seqmesh
