// The job token: the shared secret every RPC of a job carries (docs/COORDINATOR.md, "Security"),
// and the hex form of checkpoint checksums on the wire.
#pragma once

#include <cstdint>
#include <string>

namespace seqmesh::launch {

// The metadata key that carries the job token on every RPC.
inline constexpr char kTokenMetadataKey[] = "x-seqmesh-token";

// The job token from `token_file`, or else from SEQMESH_JOB_TOKEN; trailing whitespace dropped.
// Missing, empty or shorter than 16 characters is an error; a file others can read is warned of.
std::string ReadJobToken(const std::string& token_file);

// True when `a` equals `b`; the time taken depends on the lengths only, not on where they differ.
bool ConstantTimeEquals(const std::string& a, const std::string& b);

// 16 lowercase hex digits: the wire form of a checkpoint file's FNV-1a 64 (FileDigest).
std::string Hex16(uint64_t v);
bool IsHex16(const std::string& s);

}  // namespace seqmesh::launch
