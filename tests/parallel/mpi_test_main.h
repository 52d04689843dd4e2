// The main of multi-rank tests (run by CTest under mpirun): MPI_Init (mpi::Session), a world
// Communicator for the tests, RUN_ALL_TESTS, MPI_Finalize. Only rank 0 prints GoogleTest's
// progress; every rank prints its failures. A rank's result is the OR over ranks, so all ranks exit
// with one code.
#pragma once

#include <gtest/gtest.h>
#include <mpi.h>

#include <memory>

#include "parallel/mpi/mpi_communicator.h"
#include "parallel/mpi/mpi_handles.h"
#include "parallel/mpi/mpi_session.h"
#include "runtime/check.h"

namespace seqmesh::testing {

inline MpiCommunicator*& World() {
  static MpiCommunicator* world = nullptr;
  return world;
}

inline int RunMpiTests(int argc, char** argv, std::chrono::milliseconds deadline) {
  mpi::Session session(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  int failed = 0;
  {
    auto world = std::make_unique<MpiCommunicator>(MPI_COMM_WORLD, CommOptions{deadline});
    World() = world.get();
    SetLogRank(world->rank());
    if (world->rank() != 0) {
      auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
      delete listeners.Release(listeners.default_result_printer());
      struct FailurePrinter : ::testing::EmptyTestEventListener {
        void OnTestPartResult(const ::testing::TestPartResult& r) override {
          if (r.failed())
            fprintf(stderr, "[rank %d] %s:%d: %s\n", LogRank(), r.file_name() ? r.file_name() : "",
                    r.line_number(), r.message());
        }
      };
      listeners.Append(new FailurePrinter);
    }
    failed = RUN_ALL_TESTS();
    MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    World() = nullptr;
  }
  return failed;
}

}  // namespace seqmesh::testing
