#include "launch/profile_timing.h"

#include <cstring>

namespace seqmesh::launch::profile {

// Collective over the world: every rank calls it. Rank 0's result is the one written.
LinkProfile MeasureP2p(Communicator& comm, int reps) {
  const std::vector<int64_t> sizes = {1 << 20, 4 << 20, 16 << 20, 64 << 20};
  const int64_t max_count = sizes.back() / static_cast<int64_t>(sizeof(float));
  std::vector<float> a(max_count, 1.0f), b(max_count, 0.0f);  // touched: no page faults timed
  LinkProfile link;
  const int me = comm.rank();
  link.ranks = comm.size();
  if (comm.size() == 1) {
    link.how =
        "one process sending to itself through MpiCommunicator (a send to self and a receive\n"
        "#   from self in one Start): a same-process copy figure, not a network; run under\n"
        "#   mpirun with >= 2 ranks to measure a link";
  } else {
    link.how = "ping-pong of ranks 0 and 1 of " + std::to_string(comm.size()) +
               " MPI ranks through MpiCommunicator;\n#   one-way time = round trip / 2";
  }
  for (int64_t bytes : sizes) {
    const int64_t n = bytes / static_cast<int64_t>(sizeof(float));
    std::vector<double> ms;
    for (int r = -1; r < reps; ++r) {  // r = -1: warm-up (connection setup, registration)
      const auto t0 = Clock::now();
      if (comm.size() == 1) {
        const P2POp ops[] = {P2POp::Send(0, a.data(), n, DType::kF32),
                             P2POp::Recv(0, b.data(), n, DType::kF32)};
        P2PGroup g = comm.Start(ops);
        comm.Wait(g);
      } else if (me <= 1) {
        const int peer = 1 - me;
        const P2POp send = P2POp::Send(peer, a.data(), n, DType::kF32);
        const P2POp recv = P2POp::Recv(peer, b.data(), n, DType::kF32);
        for (const P2POp* op : {me == 0 ? &send : &recv, me == 0 ? &recv : &send}) {
          P2PGroup g = comm.Start(std::span<const P2POp>(op, 1));
          comm.Wait(g);
        }
      }
      const double t = MsSince(t0);
      if (r >= 0) ms.push_back(comm.size() == 1 ? t : t / 2);
    }
    link.transfers.push_back({static_cast<double>(bytes), Median(ms)});
  }
  comm.Barrier();
  link.gbps = scheduler::FitBandwidthGbps(link.transfers);
  return link;
}

// GB/s of one thread's memcpy of a 256 MiB buffer (far beyond the last-level cache).
double MeasureCopyGbps(int reps) {
  const size_t bytes = size_t{256} << 20;
  std::vector<char> src(bytes, 1), dst(bytes, 0);
  std::vector<double> ms;
  for (int r = -1; r < reps; ++r) {
    const auto t0 = Clock::now();
    std::memcpy(dst.data(), src.data(), bytes);
    const double t = MsSince(t0);
    if (r >= 0) ms.push_back(t);
  }
  SM_CHECK(dst[bytes - 1] == 1) << "memcpy bandwidth: the copy did not happen";
  return static_cast<double>(bytes) / (Median(ms) * 1e6);
}

}  // namespace seqmesh::launch::profile
