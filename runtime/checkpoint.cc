#include "runtime/checkpoint.h"

#include "runtime/check.h"

namespace seqmesh {

uint64_t Fnv1a64(const void* data, size_t bytes) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < bytes; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

Json CursorToJson(const BlendCursor& c) {
  Json epoch = Json::Array(), position = Json::Array(), drawn = Json::Array();
  for (size_t d = 0; d < c.datasets.size(); ++d) {
    epoch.Push(Json::Integer(static_cast<int64_t>(c.datasets[d].epoch)));
    position.Push(Json::Integer(c.datasets[d].position));
    drawn.Push(Json::Integer(c.drawn[d]));
  }
  Json j = Json::Object();
  j.Set("epoch", std::move(epoch));
  j.Set("position", std::move(position));
  j.Set("drawn", std::move(drawn));
  return j;
}

BlendCursor CursorFromJson(const Json& j, const std::string& what) {
  const Json* e = j.Find("epoch");
  const Json* p = j.Find("position");
  const Json* n = j.Find("drawn");
  SM_CHECK(e && p && n) << what << " needs epoch, position and drawn";
  const auto& ea = e->AsArray(what + ".epoch");
  const auto& pa = p->AsArray(what + ".position");
  const auto& na = n->AsArray(what + ".drawn");
  SM_CHECK(ea.size() == pa.size() && pa.size() == na.size())
      << what << ": epoch, position and drawn differ in length";
  BlendCursor c;
  for (size_t d = 0; d < ea.size(); ++d) {
    const int64_t epoch = ea[d].AsInt(what + ".epoch");
    SM_CHECK(epoch >= 0 && pa[d].AsInt(what) >= 0 && na[d].AsInt(what) >= 0)
        << what << ": negative entry for dataset " << d;
    c.datasets.push_back({static_cast<uint64_t>(epoch), pa[d].AsInt(what + ".position")});
    c.drawn.push_back(na[d].AsInt(what + ".drawn"));
  }
  return c;
}

}  // namespace seqmesh
