// What every checkpoint path shares beside the manifest (runtime/manifest.h): the data cursor's
// JSON form (a job's coordinator.json, launch/job_checkpoint.h) and the manifest's checksum.
// Every training command writes one layout: launch/dist_checkpoint.h's parts and
// launch/job_checkpoint.h's commit, a world of one (`seqmesh train`) as N ranks.
#pragma once

#include <cstdint>
#include <string>

#include "runtime/batch_sampler.h"
#include "runtime/json.h"

namespace seqmesh {

// The data cursor as JSON, {"epoch": [...], "position": [...], "drawn": [...]} (one entry per
// dataset of the blend), and back; errors name `what`.
Json CursorToJson(const BlendCursor& cursor);
BlendCursor CursorFromJson(const Json& json, const std::string& what);

// FNV-1a 64 of a byte range (the manifest's checksum).
uint64_t Fnv1a64(const void* data, size_t bytes);

}  // namespace seqmesh
