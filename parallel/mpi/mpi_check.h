// SM_CHECK_MPI: the MPI member of the check family (STYLE.md rule 5). Communicators it guards
// use MPI_ERRORS_RETURN, so a failed call returns a code that this turns into a seqmesh::Error
// carrying MPI's own error text.
//
//   SM_CHECK_MPI(MPI_Comm_dup(comm, &dup)) << "duplicating the world communicator";
#pragma once

#include <mpi.h>

#include <string>

#include "runtime/check.h"

namespace seqmesh::mpi {

// MPI_Error_string of `code`, or "MPI error <code>".
std::string ErrorString(int code);

}  // namespace seqmesh::mpi

#define SM_CHECK_MPI(expr) \
  SM_CHECK_STATUS(expr, MPI_SUCCESS, "MPI") << ::seqmesh::mpi::ErrorString(sm_status_) << ". "
