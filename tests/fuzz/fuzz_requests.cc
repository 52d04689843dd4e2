// The coordinator's request checks (launch/coordinator_requests.h): the first byte picks the RPC,
// the rest is its request as it arrives on the wire. A body that parses is accepted or refused
// with INVALID_ARGUMENT and a message; an accepted request holds what the coordinator relies on.
#include <cstdlib>

#include "launch/coordinator_requests.h"
#include "tests/fuzz/fuzz_input.h"

namespace {

constexpr int kWorld = 4;
constexpr int64_t kBatchTokens = 2048;
constexpr int kMicroBatches = 3;

void Expect(const grpc::Status& s) {
  if (s.ok()) return;
  if (s.error_code() != grpc::StatusCode::INVALID_ARGUMENT || s.error_message().empty())
    std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t* body = data + 1;
  const int n = static_cast<int>(size - 1);
  return seqmesh::fuzz::Refusing([&] {
    switch (data[0] % 3) {
      case 0: {
        seqmesh::proto::RegisterRequest r;
        if (!r.ParseFromArray(body, n)) return;
        const grpc::Status s = seqmesh::launch::CheckRegisterFields(r, kWorld);
        Expect(s);
        if (s.ok() && (r.rank() < 0 || r.rank() >= kWorld || r.hostname().empty())) std::abort();
        break;
      }
      case 1: {
        seqmesh::proto::MetricsReport r;
        if (!r.ParseFromArray(body, n)) return;
        Expect(seqmesh::launch::CheckMetricsFields(r, kBatchTokens, kMicroBatches));
        break;
      }
      default: {
        seqmesh::proto::CheckpointPart r;
        if (!r.ParseFromArray(body, n)) return;
        const grpc::Status s = seqmesh::launch::CheckPartFields(r);
        Expect(s);
        if (s.ok() && (r.files_size() < 1 || r.files_size() > 1024)) std::abort();
        break;
      }
    }
  });
}
