#include "launch/grpc_log.h"

#include <grpc/support/log.h>

#include <cstdio>
#include <mutex>

#include "runtime/check.h"

namespace seqmesh::launch {
namespace {

void DebugOnly(gpr_log_func_args* args) {
  if (!DebugLocations()) return;
  std::fprintf(stderr, "grpc %s: %s:%d: %s\n", gpr_log_severity_string(args->severity), args->file,
               args->line, args->message);
}

}  // namespace

void RouteGrpcLog() {
  static std::once_flag once;
  std::call_once(once, [] { gpr_set_log_function(&DebugOnly); });
}

}  // namespace seqmesh::launch
