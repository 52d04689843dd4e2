#include "parallel/mpi/mpi_session.h"

#include <cstdlib>
#include <utility>

#include "parallel/mpi/mpi_check.h"
#include "parallel/mpi/mpi_handles.h"

namespace seqmesh::mpi {

Session::Session(int* argc, char*** argv, int required) {
  setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "3", /*overwrite=*/0);
  SM_CHECK_MPI(MPI_Init_thread(argc, argv, required, &provided_));
  owns_ = true;
  SM_CHECK(provided_ >= required) << "MPI provides thread level " << provided_ << ", need "
                                  << required;
}

Session::~Session() {
  if (owns_ && !Finalized()) MPI_Finalize();
}

Session::Session(Session&& o) noexcept
    : owns_(std::exchange(o.owns_, false)), provided_(o.provided_) {}

}  // namespace seqmesh::mpi
