#include "launch/coordinator_requests.h"

#include <cmath>
#include <vector>

#include "launch/job_checkpoint.h"
#include "launch/job_token.h"

namespace seqmesh::launch {
namespace {

constexpr size_t kMaxHostname = 255;
constexpr int kMaxFilesPerPart = 1024;

}  // namespace

grpc::Status Invalid(const std::string& message) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, message);
}

grpc::Status CheckRegisterFields(const proto::RegisterRequest& request, int world_size) {
  const int n = world_size;
  if (request.world_size() != n)
    return Invalid("Register: world_size: " + std::to_string(request.world_size()) +
                   " differs from the job's " + std::to_string(n));
  if (request.rank() < 0 || request.rank() >= n)
    return Invalid("Register: rank: " + std::to_string(request.rank()) + " is not in [0, " +
                   std::to_string(n) + ")");
  const std::string& host = request.hostname();
  if (host.empty() || host.size() > kMaxHostname)
    return Invalid("Register: hostname: " + std::to_string(host.size()) +
                   " bytes (1 to 255 expected)");
  for (char c : host)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f)
      return Invalid("Register: hostname: contains a space or control character");
  if (request.pid() <= 0)
    return Invalid("Register: pid: " + std::to_string(request.pid()) + " must be > 0");
  return grpc::Status::OK;
}

grpc::Status CheckMetricsFields(const proto::MetricsReport& request, int64_t batch_tokens,
                                int micro_batches) {
  const int rank = request.rank();
  const int planned = micro_batches;
  // A non-finite loss or gradient norm is a training event (training.nonfinite); only the norm
  // decides it (every rank holds the same one), so a non-finite loss beside a finite norm, or a
  // non-finite learning rate or validation loss, is a malformed report.
  if (!std::isfinite(request.lr()))
    return Invalid("ReportMetrics: lr: " + std::to_string(request.lr()) + " is not finite");
  if (!std::isfinite(request.loss()) && std::isfinite(request.grad_norm()))
    return Invalid("ReportMetrics: loss: " + std::to_string(request.loss()) +
                   " is not finite but grad_norm " + std::to_string(request.grad_norm()) + " is");
  if (request.has_val_loss() && std::isnan(request.val_loss()))
    return Invalid("ReportMetrics: val_loss: NaN (leave it out when the step was not evaluated)");
  if (!std::isfinite(request.rss_mib()) || request.rss_mib() < 0)
    return Invalid("ReportMetrics: rss_mib: " + std::to_string(request.rss_mib()) +
                   " is not a finite non-negative size");
  if (!std::isfinite(request.step_ms()) || request.step_ms() < 0)
    return Invalid("ReportMetrics: step_ms: " + std::to_string(request.step_ms()) +
                   " must be finite and >= 0");
  if (!std::isfinite(request.compute_ms()) || request.compute_ms() < 0)
    return Invalid("ReportMetrics: compute_ms: " + std::to_string(request.compute_ms()) +
                   " must be finite and >= 0");
  if (request.tokens() > static_cast<uint64_t>(batch_tokens))
    return Invalid("ReportMetrics: tokens: " + std::to_string(request.tokens()) +
                   " exceeds the step's global batch of " + std::to_string(batch_tokens));
  if (request.micro_batch_times_size() > planned)
    return Invalid("ReportMetrics: micro_batch_times: " +
                   std::to_string(request.micro_batch_times_size()) + " entries for rank " +
                   std::to_string(rank) + "'s " + std::to_string(planned) + " micro-batches");
  std::vector<bool> timed(planned, false);
  for (const proto::MicroBatchTiming& t : request.micro_batch_times()) {
    if (t.micro_batch() >= static_cast<uint32_t>(planned) || timed[t.micro_batch()])
      return Invalid("ReportMetrics: micro_batch_times: micro_batch " +
                     std::to_string(t.micro_batch()) + " is not one of rank " +
                     std::to_string(rank) + "'s " + std::to_string(planned) +
                     " micro-batches, or is listed twice");
    if (!std::isfinite(t.start_ms()) || !std::isfinite(t.end_ms()) || t.start_ms() < 0 ||
        t.end_ms() < t.start_ms())
      return Invalid("ReportMetrics: micro_batch_times: micro_batch " +
                     std::to_string(t.micro_batch()) + " has start_ms " +
                     std::to_string(t.start_ms()) + " and end_ms " + std::to_string(t.end_ms()) +
                     " (must be finite, 0 <= start_ms <= end_ms)");
    timed[t.micro_batch()] = true;
  }
  return grpc::Status::OK;
}

grpc::Status CheckPartFields(const proto::CheckpointPart& request) {
  if (request.files_size() == 0 || request.files_size() > kMaxFilesPerPart)
    return Invalid("CommitCheckpoint: files: " + std::to_string(request.files_size()) +
                   " entries (1 to " + std::to_string(kMaxFilesPerPart) + " expected)");
  for (int i = 0; i < request.files_size(); ++i) {
    const proto::FileDigest& f = request.files(i);
    const std::string field = "CommitCheckpoint: files[" + std::to_string(i) + "]";
    if (const std::string why = CheckPartFileName(f.name()); !why.empty())
      return Invalid(field + ".name: '" + f.name() + "' " + why);
    if (!IsHex16(f.fnv1a64()))
      return Invalid(field + ".fnv1a64: '" + f.fnv1a64() + "' is not 16 lowercase hex digits");
    for (int j = 0; j < i; ++j)
      if (request.files(j).name() == f.name())
        return Invalid(field + ".name: '" + f.name() + "' is listed twice");
  }
  return grpc::Status::OK;
}

}  // namespace seqmesh::launch
