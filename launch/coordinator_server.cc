// CoordinatorServer (launch/coordinator.h): the gRPC front of a Coordinator. This file owns the
// transport's defences; the Coordinator owns the semantic checks of every field.
//   - Auth: the job token in metadata `x-seqmesh-token`, checked before anything else: every
//     method is raw, so the body is parsed only after the token (a malformed body with a good
//     token is INVALID_ARGUMENT).
//   - Limits: 64 KiB per request (larger ones fail in the transport with RESOURCE_EXHAUSTED
//     before any handler runs), a cap on concurrent streams per connection, and a thread quota.
//   - Transport: TLS from PEM files, else plaintext, bound to an explicit interface.
//   - Boundary: an exception in a handler becomes INTERNAL; the server keeps serving.
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/proto_utils.h>
#include <grpcpp/resource_quota.h>
#include <grpcpp/security/server_credentials.h>

#include <algorithm>
#include <filesystem>

#include "launch/coordinator.h"
#include "launch/grpc_log.h"
#include "proto/coordinator.grpc.pb.h"
#include "runtime/check.h"
#include "runtime/files.h"

namespace seqmesh::launch {
namespace {

std::string ReadPem(const std::string& path, const char* what) {
  SM_CHECK(std::filesystem::exists(path)) << what << " '" << path << "' does not exist";
  MappedFile f(path);
  SM_CHECK(f.size() > 0) << what << " '" << path << "' is empty";
  return std::string(reinterpret_cast<const char*>(f.data()), f.size());
}

std::string HostPort(const std::string& address, int port) {
  const bool v6 = address.find(':') != std::string::npos && address.front() != '[';
  return (v6 ? "[" + address + "]" : address) + ":" + std::to_string(port);
}

}  // namespace

// Every method raw (the body arrives as bytes): the token is checked before the body is parsed
// or used at all, and a body that does not parse is INVALID_ARGUMENT, not gRPC's INTERNAL.
using RawService = proto::Coordinator::WithRawCallbackMethod_Register<
    proto::Coordinator::WithRawCallbackMethod_GetPlan<
        proto::Coordinator::WithRawCallbackMethod_Heartbeat<
            proto::Coordinator::WithRawCallbackMethod_ReportMetrics<
                proto::Coordinator::WithRawCallbackMethod_CommitCheckpoint<
                    proto::Coordinator::Service>>>>>;

class CoordinatorServer::Service final : public RawService {
 public:
  explicit Service(Coordinator& coordinator) : coordinator_(coordinator) {}

  grpc::ServerUnaryReactor* Register(grpc::CallbackServerContext* context,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* reply) override {
    return Serve<proto::RegisterRequest, proto::RegisterReply>(
        context, request, reply, "Register",
        [&](const auto& r, auto* out) { return coordinator_.Register(r, out); });
  }
  grpc::ServerUnaryReactor* GetPlan(grpc::CallbackServerContext* context,
                                    const grpc::ByteBuffer* request,
                                    grpc::ByteBuffer* reply) override {
    return Serve<proto::PlanRequest, proto::PlanReply>(
        context, request, reply, "GetPlan",
        [&](const auto& r, auto* out) { return coordinator_.GetPlan(r, out); });
  }
  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* context,
                                      const grpc::ByteBuffer* request,
                                      grpc::ByteBuffer* reply) override {
    return Serve<proto::HeartbeatRequest, proto::HeartbeatReply>(
        context, request, reply, "Heartbeat",
        [&](const auto& r, auto* out) { return coordinator_.Heartbeat(r, out); });
  }
  grpc::ServerUnaryReactor* ReportMetrics(grpc::CallbackServerContext* context,
                                          const grpc::ByteBuffer* request,
                                          grpc::ByteBuffer* reply) override {
    return Serve<proto::MetricsReport, proto::MetricsReply>(
        context, request, reply, "ReportMetrics",
        [&](const auto& r, auto* out) { return coordinator_.ReportMetrics(r, out); });
  }
  grpc::ServerUnaryReactor* CommitCheckpoint(grpc::CallbackServerContext* context,
                                             const grpc::ByteBuffer* request,
                                             grpc::ByteBuffer* reply) override {
    return Serve<proto::CheckpointPart, proto::CommitReply>(
        context, request, reply, "CommitCheckpoint",
        [&](const auto& r, auto* out) { return coordinator_.CommitCheckpoint(r, out); });
  }

 private:
  // Exactly one token value, equal to the job's.
  grpc::Status Authenticate(const grpc::CallbackServerContext* context) const {
    const auto& metadata = context->client_metadata();
    const auto range = metadata.equal_range(kTokenMetadataKey);
    if (range.first == range.second)
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                          std::string("missing job token (metadata '") + kTokenMetadataKey + "')");
    if (std::next(range.first) != range.second)
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "more than one job token");
    const grpc::string_ref& value = range.first->second;
    if (!ConstantTimeEquals(std::string(value.data(), value.size()), coordinator_.token()))
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "wrong job token");
    return grpc::Status::OK;
  }

  // Authenticates, then parses the body, runs the handler (an exception becomes INTERNAL) and
  // serializes its reply.
  template <typename Request, typename Reply, typename Handler>
  grpc::Status Handle(grpc::CallbackServerContext* context, const grpc::ByteBuffer* body,
                      grpc::ByteBuffer* out, const char* rpc, Handler handler) {
    if (grpc::Status s = Authenticate(context); !s.ok()) return s;
    Request request;
    grpc::ByteBuffer copy(*body);  // shares the slices; parsing consumes the copy
    if (!grpc::GenericDeserialize<grpc::ProtoBufferReader, Request>(&copy, &request).ok())
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          std::string(rpc) + ": the request body is not a valid " +
                              Request::descriptor()->full_name() + " message");
    Reply reply;
    try {
      if (grpc::Status s = handler(request, &reply); !s.ok()) return s;
    } catch (const std::exception& e) {
      return grpc::Status(grpc::StatusCode::INTERNAL, e.what());
    }
    bool own_buffer = false;
    return grpc::GenericSerialize<grpc::ProtoBufferWriter, Reply>(reply, out, &own_buffer);
  }

  template <typename Request, typename Reply, typename Handler>
  grpc::ServerUnaryReactor* Serve(grpc::CallbackServerContext* context,
                                  const grpc::ByteBuffer* body, grpc::ByteBuffer* out,
                                  const char* rpc, Handler handler) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(Handle<Request, Reply>(context, body, out, rpc, handler));
    return reactor;
  }

  Coordinator& coordinator_;
};

CoordinatorServer::CoordinatorServer(Coordinator& coordinator, const ServerOptions& options)
    : service_(std::make_unique<Service>(coordinator)), address_(options.address) {
  RouteGrpcLog();
  SM_CHECK(!options.address.empty()) << "the coordinator needs an address to bind to";
  SM_CHECK(options.port >= 0 && options.port <= 65535)
      << "port " << options.port << " is not in [0, 65535]";
  SM_CHECK(options.tls_cert_file.empty() == options.tls_key_file.empty())
      << "TLS needs both a certificate and a key file (got "
      << (options.tls_cert_file.empty() ? "a key only" : "a certificate only") << ")";
  SM_CHECK(options.tls_client_ca_file.empty() || !options.tls_cert_file.empty())
      << "mutual TLS (a client CA) needs the server's own TLS certificate and key";
  std::shared_ptr<grpc::ServerCredentials> credentials;
  if (!options.tls_cert_file.empty()) {
    grpc::SslServerCredentialsOptions ssl(
        options.tls_client_ca_file.empty()
            ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
            : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    if (!options.tls_client_ca_file.empty())
      ssl.pem_root_certs = ReadPem(options.tls_client_ca_file, "TLS client CA file");
    ssl.pem_key_cert_pairs.push_back({ReadPem(options.tls_key_file, "TLS key file"),
                                      ReadPem(options.tls_cert_file, "TLS certificate file")});
    credentials = grpc::SslServerCredentials(ssl);
  } else {
    credentials = grpc::InsecureServerCredentials();
  }
  grpc::ServerBuilder builder;
  builder.AddListeningPort(HostPort(options.address, options.port), credentials, &port_);
  builder.RegisterService(service_.get());
  builder.SetMaxReceiveMessageSize(options.max_receive_bytes);
  builder.SetMaxSendMessageSize(options.max_send_bytes);
  // A worker holds at most a few calls at once (its step loop and its heartbeat thread).
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, 16);
  grpc::ResourceQuota quota("seqmesh-coordinator");
  quota.SetMaxThreads(std::max(32, 4 * coordinator.world_size() + 8));
  builder.SetResourceQuota(quota);
  server_ = builder.BuildAndStart();
  SM_CHECK(server_ != nullptr && port_ > 0)
      << "cannot serve on " << HostPort(options.address, options.port)
      << " (address in use, or not an address of this machine?)";
}

CoordinatorServer::~CoordinatorServer() { Shutdown(); }

std::string CoordinatorServer::target() const { return HostPort(address_, port_); }

void CoordinatorServer::Shutdown(std::chrono::milliseconds grace) {
  if (!server_) return;
  server_->Shutdown(std::chrono::system_clock::now() + grace);
  server_->Wait();
  server_.reset();
}

}  // namespace seqmesh::launch
