// The worker's side of the coordinator service (proto/coordinator.proto, docs/COORDINATOR.md):
// one channel, the job token attached to every call, a deadline on every call, and TLS when a
// root certificate is given. Thread-safe: a worker's step loop and its heartbeat thread share
// one client.
#pragma once

#include <grpcpp/channel.h>
#include <grpcpp/support/status.h>

#include <chrono>
#include <memory>
#include <string>

#include "proto/coordinator.grpc.pb.h"
#include "proto/coordinator.pb.h"
#include "runtime/check.h"

namespace seqmesh::launch {

// A failed RPC: the message names the RPC, the target and the status; code() is the status.
class CoordinatorRpcError : public Error {
 public:
  CoordinatorRpcError(const std::string& what, grpc::StatusCode code) : Error(what), code_(code) {}
  grpc::StatusCode code() const { return code_; }

 private:
  grpc::StatusCode code_;
};

struct ClientOptions {
  // PEM file of the certificate (or CA) that signed the coordinator's; empty: plaintext.
  std::string tls_root_cert_file;
  // The name to check the coordinator's certificate against, when it is not the target's host
  // (e.g. "localhost" for a certificate made for it while connecting to 127.0.0.1).
  std::string tls_target_name;
  // Mutual TLS: this client's certificate and key (PEM, both or neither; needs
  // tls_root_cert_file), for a coordinator that requires client certificates.
  std::string tls_cert_file;
  std::string tls_key_file;
  std::chrono::milliseconds deadline{30000};  // per call
  int max_receive_bytes = 64 * 1024 * 1024;   // plans of large batches
};

// "STATUS_NAME" of a gRPC status code (e.g. "INVALID_ARGUMENT").
const char* StatusCodeName(grpc::StatusCode code);

class CoordinatorClient {
 public:
  // `target`: "host:port". Connects lazily; the first call fails with UNAVAILABLE if no
  // coordinator answers within the deadline.
  CoordinatorClient(const std::string& target, std::string token, ClientOptions options = {});
  ~CoordinatorClient();
  CoordinatorClient(const CoordinatorClient&) = delete;
  CoordinatorClient& operator=(const CoordinatorClient&) = delete;

  // Each throws CoordinatorRpcError when the call fails.
  proto::RegisterReply Register(const proto::RegisterRequest& request);
  proto::PlanReply GetPlan(const proto::PlanRequest& request);
  proto::HeartbeatReply Heartbeat(const proto::HeartbeatRequest& request);
  void ReportMetrics(const proto::MetricsReport& request);
  proto::CommitReply CommitCheckpoint(const proto::CheckpointPart& request);

  const std::string& target() const { return target_; }

 private:
  template <typename Request, typename Reply, typename Method>
  Reply Call(const char* rpc, Method method, const Request& request);

  std::string target_;
  std::string token_;
  ClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<proto::Coordinator::Stub> stub_;
};

}  // namespace seqmesh::launch
