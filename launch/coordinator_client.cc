#include "launch/coordinator_client.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/credentials.h>

#include <filesystem>
#include <iterator>

#include "launch/coordinator.h"
#include "launch/grpc_log.h"
#include "runtime/files.h"

namespace seqmesh::launch {

const char* StatusCodeName(grpc::StatusCode code) {
  // In the order of their values, 0 to 16 (grpcpp/support/status_code_enum.h).
  // clang-format off
  static constexpr const char* kNames[] = {
      "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
      "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
      "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
      "UNAUTHENTICATED"};
  // clang-format on
  const int i = static_cast<int>(code);
  return i >= 0 && i < static_cast<int>(std::size(kNames)) ? kNames[i] : "UNKNOWN_STATUS";
}

CoordinatorClient::CoordinatorClient(const std::string& target, std::string token,
                                     ClientOptions options)
    : target_(target), token_(std::move(token)), options_(std::move(options)) {
  RouteGrpcLog();
  SM_CHECK(!target_.empty()) << "the coordinator's address is empty";
  SM_CHECK(!token_.empty()) << "the job token is empty";
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options_.max_receive_bytes);
  SM_CHECK(options_.tls_cert_file.empty() == options_.tls_key_file.empty())
      << "a TLS client certificate needs its key, and the key its certificate";
  SM_CHECK(options_.tls_cert_file.empty() || !options_.tls_root_cert_file.empty())
      << "a TLS client certificate needs the coordinator's root certificate too";
  auto read = [](const std::string& path, const char* what) {
    SM_CHECK(std::filesystem::exists(path)) << what << " '" << path << "' does not exist";
    MappedFile pem(path);
    return std::string(reinterpret_cast<const char*>(pem.data()), pem.size());
  };
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (!options_.tls_root_cert_file.empty()) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = read(options_.tls_root_cert_file, "TLS root certificate");
    if (!options_.tls_cert_file.empty()) {
      ssl.pem_cert_chain = read(options_.tls_cert_file, "TLS client certificate");
      ssl.pem_private_key = read(options_.tls_key_file, "TLS client key");
    }
    credentials = grpc::SslCredentials(ssl);
    if (!options_.tls_target_name.empty()) args.SetSslTargetNameOverride(options_.tls_target_name);
  } else {
    credentials = grpc::InsecureChannelCredentials();
  }
  channel_ = grpc::CreateCustomChannel(target_, credentials, args);
  stub_ = proto::Coordinator::NewStub(channel_);
}

CoordinatorClient::~CoordinatorClient() = default;

template <typename Request, typename Reply, typename Method>
Reply CoordinatorClient::Call(const char* rpc, Method method, const Request& request) {
  grpc::ClientContext context;
  context.AddMetadata(kTokenMetadataKey, token_);
  context.set_deadline(std::chrono::system_clock::now() + options_.deadline);
  Reply reply;
  const grpc::Status status = ((*stub_).*method)(&context, request, &reply);
  if (!status.ok())
    throw CoordinatorRpcError(std::string("coordinator RPC ") + rpc + " to " + target_ +
                                  " failed: " + StatusCodeName(status.error_code()) + ": " +
                                  status.error_message(),
                              status.error_code());
  return reply;
}

proto::RegisterReply CoordinatorClient::Register(const proto::RegisterRequest& request) {
  return Call<proto::RegisterRequest, proto::RegisterReply>(
      "Register", &proto::Coordinator::Stub::Register, request);
}

proto::PlanReply CoordinatorClient::GetPlan(const proto::PlanRequest& request) {
  return Call<proto::PlanRequest, proto::PlanReply>("GetPlan", &proto::Coordinator::Stub::GetPlan,
                                                    request);
}

proto::HeartbeatReply CoordinatorClient::Heartbeat(const proto::HeartbeatRequest& request) {
  return Call<proto::HeartbeatRequest, proto::HeartbeatReply>(
      "Heartbeat", &proto::Coordinator::Stub::Heartbeat, request);
}

void CoordinatorClient::ReportMetrics(const proto::MetricsReport& request) {
  Call<proto::MetricsReport, proto::MetricsReply>(
      "ReportMetrics", &proto::Coordinator::Stub::ReportMetrics, request);
}

proto::CommitReply CoordinatorClient::CommitCheckpoint(const proto::CheckpointPart& request) {
  return Call<proto::CheckpointPart, proto::CommitReply>(
      "CommitCheckpoint", &proto::Coordinator::Stub::CommitCheckpoint, request);
}

}  // namespace seqmesh::launch
