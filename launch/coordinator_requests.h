// The coordinator's RPCs checked field by field before any state is used (docs/COORDINATOR.md):
// each refusal is INVALID_ARGUMENT naming the field and the value. The checks that need the
// job's state (window, generation, registration) stay in the Coordinator.
#pragma once

#include <grpcpp/support/status.h>

#include <cstdint>
#include <string>

#include "proto/coordinator.pb.h"

namespace seqmesh::launch {

grpc::Status Invalid(const std::string& message);

// rank in [0, world_size), the job's world size, a hostname of 1..255 printable bytes, pid > 0.
grpc::Status CheckRegisterFields(const proto::RegisterRequest& request, int world_size);
// Finite, non-negative times, at most the step's `batch_tokens`, and micro_batch_times naming
// each of the rank's `micro_batches` at most once with 0 <= start_ms <= end_ms.
grpc::Status CheckMetricsFields(const proto::MetricsReport& request, int64_t batch_tokens,
                                int micro_batches);
// 1..1024 files, each a valid part file name (job_checkpoint.h) listed once with a 16-digit
// lowercase hex checksum.
grpc::Status CheckPartFields(const proto::CheckpointPart& request);

}  // namespace seqmesh::launch
