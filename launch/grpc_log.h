// gRPC's own log lines (e.g. `E1201 ... backup_poller.cc ... Timer list shutdown` as a process
// exits) are its internals, not the run's: they go to stderr only with SEQMESH_DEBUG=1 (the
// debug log, as check locations do). Errors that matter reach seqmesh as a call's Status and are
// reported in its own words.
#pragma once

namespace seqmesh::launch {

// Installs the filter (once per process; every gRPC server and client constructor calls it).
void RouteGrpcLog();

}  // namespace seqmesh::launch
