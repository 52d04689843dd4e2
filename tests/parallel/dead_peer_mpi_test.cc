// A peer that stops participating mid-step makes the others fail within the deadline with an
// error naming the operation, the peer and the step (no hang). Run by dead_peer_test.sh, which
// launches this under mpirun and checks the verdict every survivor writes.
//
//   dead_peer_mpi_test <stop|kill> <deadline_ms> <verdict_dir>
//
// Every step runs a ring exchange over all ranks (rank k sends to k+1 and receives from k-1),
// then an all-reduce. At step 3 the last rank (the victim) stops: `stop` raises SIGSTOP on
// itself (a hung peer), `kill` raises SIGKILL (a dead one). Its successor in the ring times out
// in the receive and names it; the others time out in the all-reduce, which names every other
// rank. Each survivor writes "<elapsed ms> <message>" to <verdict_dir>/rank<r>. Survivors cannot
// finalize MPI with a stopped peer, so they wait for all verdicts, rank 0 SIGKILLs a stopped
// victim (same host: its pid was gathered at start), and every survivor leaves with _exit(0).
#include <mpi.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "parallel/mpi/mpi_communicator.h"
#include "parallel/mpi/mpi_session.h"

int main(int argc, char** argv) {
  using namespace seqmesh;
  using Clock = std::chrono::steady_clock;
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s <stop|kill> <deadline_ms> <verdict_dir>\n", argv[0]);
    return 2;
  }
  const std::string mode = argv[1];
  const std::chrono::milliseconds deadline(std::stoi(argv[2]));
  const std::filesystem::path dir = argv[3];
  mpi::Session session(&argc, &argv);  // never finalized: see _exit below
  int rank = 0, size = 1;
  {
    MpiCommunicator comm(MPI_COMM_WORLD, CommOptions{deadline});
    rank = comm.rank();
    size = comm.size();
    SetLogRank(rank);
    const int victim = size - 1;
    std::vector<int> pids(size);
    pids[rank] = static_cast<int>(getpid());
    MPI_Allgather(MPI_IN_PLACE, 1, MPI_INT, pids.data(), 1, MPI_INT, MPI_COMM_WORLD);

    std::vector<float> send(1000, static_cast<float>(rank)), recv(1000), grad(4099, 1.0f);
    auto start = Clock::now();
    try {
      for (int step = 0; step < 6; ++step) {
        comm.SetStep(step);
        if (step == 3 && rank == victim) raise(mode == "kill" ? SIGKILL : SIGSTOP);
        start = Clock::now();
        const P2POp ops[] = {P2POp::Send((rank + 1) % size, send.data(), 1000, DType::kF32),
                             P2POp::Recv((rank + size - 1) % size, recv.data(), 1000, DType::kF32)};
        P2PGroup group = comm.Start(ops);
        comm.Wait(group);
        comm.AllReduce(grad.data(), 4099, DType::kF32);
      }
      std::fprintf(stderr, "[rank %d] no error: the victim did not stop\n", rank);
    } catch (const Error& e) {
      const auto ms =
          std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
      // Written whole, then renamed: a verdict that exists is complete.
      const auto path = dir / ("rank" + std::to_string(rank));
      std::ofstream(path.string() + ".tmp") << ms << " " << e.what() << "\n";
      std::filesystem::rename(path.string() + ".tmp", path);
      std::fprintf(stderr, "[rank %d] failed after %lld ms: %s\n", rank, static_cast<long long>(ms),
                   e.what());
    }
    // Every survivor waits (bounded) for all verdicts before anyone leaves: mpirun tears the
    // job down as soon as one process exits without MPI_Finalize.
    for (int i = 0; i < 100; ++i) {
      int have = 0;
      for (int r = 0; r < victim; ++r)
        have += std::filesystem::exists(dir / ("rank" + std::to_string(r)));
      if (have == victim) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (rank == 0) kill(pids[victim], SIGKILL);  // a stopped victim would never exit
  }
  std::fflush(nullptr);
  _exit(0);  // MPI_Finalize would wait for the dead peer
}
