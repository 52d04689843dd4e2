#include "runtime/safetensors.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "runtime/json.h"

namespace seqmesh {
namespace {

constexpr uint64_t kMaxHeader = 100ull << 20;

size_t DTypeBytes(const std::string& d) {
  if (d == "BOOL" || d == "U8" || d == "I8" || d == "F8_E4M3" || d == "F8_E5M2") return 1;
  if (d == "I16" || d == "U16" || d == "F16" || d == "BF16") return 2;
  if (d == "I32" || d == "U32" || d == "F32") return 4;
  if (d == "I64" || d == "U64" || d == "F64") return 8;
  return 0;
}

float HalfToFloat(uint16_t h) {
  const uint32_t sign = (h >> 15) & 1, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  float v;
  if (exp == 0)
    v = std::ldexp(static_cast<float>(mant), -24);
  else if (exp == 31)
    v = mant ? NAN : INFINITY;
  else
    v = std::ldexp(static_cast<float>(mant | 0x400), static_cast<int>(exp) - 25);
  return sign ? -v : v;
}

}  // namespace

uint16_t FloatToF16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t a = x & 0x7fffffffu;
  if (a > 0x7f800000u) return sign | 0x7e00u;   // NaN stays NaN
  if (a >= 0x477ff000u) return sign | 0x7c00u;  // from 65520 (half-way past 65504): infinity
  if (a < 0x38800000u) {
    // Below 2^-14: a subnormal half, in units of 2^-24. The product is exact (a power of two)
    // and nearbyint rounds half to even; 1024 units is the smallest normal, 0x0400.
    float abs_f;
    std::memcpy(&abs_f, &a, 4);
    return sign | static_cast<uint16_t>(std::nearbyint(abs_f * 16777216.0f));
  }
  // Normal: rebias the exponent (127 -> 15), then round the 13 dropped bits half to even (a
  // carry into the exponent is the right result, up to 65504).
  uint32_t r = a - 0x38000000u;
  r += 0xfffu + ((r >> 13) & 1u);
  return sign | static_cast<uint16_t>(r >> 13);
}

float F16ToFloat(uint16_t h) { return HalfToFloat(h); }

SafetensorsFile SafetensorsFile::Open(const std::string& path) {
  SafetensorsFile f{MappedFile(path)};
  const uint8_t* p = f.file_.data();
  const size_t size = f.file_.size();
  SM_CHECK(size >= 8) << "'" << path << "' is truncated: " << size
                      << " bytes, no room for the 8-byte header size";
  uint64_t n;
  std::memcpy(&n, p, 8);
  SM_CHECK(n <= kMaxHeader) << "'" << path << "': header size " << n << " exceeds the 100 MB limit";
  SM_CHECK(n <= size - 8) << "'" << path << "' is truncated: header size " << n << " but only "
                          << size - 8 << " bytes follow";
  const std::string what = "'" + path + "' header";
  const Json header = Json::Parse(std::string_view(reinterpret_cast<const char*>(p + 8), n), what);
  const uint8_t* buffer = p + 8 + n;
  const size_t buffer_size = size - 8 - n;
  for (const auto& [name, v] : header.AsObject(what)) {
    if (name == "__metadata__") {
      for (const auto& [k, mv] : v.AsObject(what + " __metadata__"))
        f.metadata_[k] = mv.AsString(what + " __metadata__." + k);
      continue;
    }
    const std::string field = "'" + path + "' tensor '" + name + "'";
    SafetensorsEntry e;
    e.name = name;
    const Json* dtype = v.Find("dtype");
    const Json* shape = v.Find("shape");
    const Json* offsets = v.Find("data_offsets");
    SM_CHECK(dtype && shape && offsets) << field << " needs dtype, shape and data_offsets";
    e.dtype = dtype->AsString(field + " dtype");
    const size_t item = DTypeBytes(e.dtype);
    SM_CHECK(item > 0) << field << " has unknown dtype " << e.dtype;
    uint64_t numel = 1;
    for (const Json& d : shape->AsArray(field + " shape")) {
      const int64_t dim = d.AsInt(field + " shape");
      SM_CHECK(dim >= 0) << field << " has a negative dimension " << dim;
      SM_CHECK(dim == 0 || numel <= UINT64_MAX / 8 / static_cast<uint64_t>(dim))
          << field << " has an impossible shape";
      numel *= static_cast<uint64_t>(dim);
      e.shape.push_back(dim);
    }
    const auto& off = offsets->AsArray(field + " data_offsets");
    SM_CHECK(off.size() == 2) << field << " data_offsets must be [begin, end]";
    const int64_t begin = off[0].AsInt(field + " data_offsets"),
                  end = off[1].AsInt(field + " data_offsets");
    SM_CHECK(0 <= begin && begin <= end && static_cast<uint64_t>(end) <= buffer_size)
        << field << " data_offsets [" << begin << ", " << end << "] lie outside the " << buffer_size
        << "-byte buffer (truncated file?)";
    SM_CHECK(static_cast<uint64_t>(end - begin) == numel * item)
        << field << " data_offsets span " << end - begin << " bytes but shape x " << e.dtype
        << " needs " << numel * item;
    e.data = buffer + begin;
    e.bytes = static_cast<size_t>(end - begin);
    f.entries_.push_back(std::move(e));
  }
  // Regions in buffer order must tile it exactly.
  std::vector<const SafetensorsEntry*> order;
  for (const auto& e : f.entries_) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->data < b->data; });
  const uint8_t* at = buffer;
  for (const SafetensorsEntry* e : order) {
    SM_CHECK(e->data == at) << "'" << path << "': tensor '" << e->name << "' starts at byte "
                            << e->data - buffer << " but the previous region ends at "
                            << at - buffer << " (overlap or gap)";
    at += e->bytes;
  }
  SM_CHECK(at == buffer + buffer_size) << "'" << path << "': the tensors cover " << at - buffer
                                       << " bytes of a " << buffer_size << "-byte buffer";
  return f;
}

const SafetensorsEntry* SafetensorsFile::Find(const std::string& name) const {
  for (const auto& e : entries_)
    if (e.name == name) return &e;
  return nullptr;
}

void SafetensorsFile::ReadInto(const std::string& name, const Tensor& dst) const {
  const SafetensorsEntry* e = Find(name);
  SM_CHECK(e) << "'" << path() << "' has no tensor '" << name << "'";
  bool same = static_cast<int>(e->shape.size()) == dst.shape().ndim();
  for (size_t i = 0; same && i < e->shape.size(); ++i) same = e->shape[i] == dst.dim(i);
  if (!same) {
    std::string s = "[";
    for (size_t i = 0; i < e->shape.size(); ++i) s += (i ? ", " : "") + std::to_string(e->shape[i]);
    SM_CHECK(false) << "'" << path() << "' tensor '" << name << "' has shape " << s
                    << "], expected " << dst.shape().ToString() << " for '" << dst.name() << "'";
  }
  float* out = dst.f32();
  const int64_t n = dst.numel();
  if (e->dtype == "F32") {
    std::memcpy(out, e->data, n * sizeof(float));
  } else if (e->dtype == "BF16") {
    for (int64_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, e->data + 2 * i, 2);
      out[i] = Bf16ToFloat(h);
    }
  } else if (e->dtype == "F16") {
    for (int64_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, e->data + 2 * i, 2);
      out[i] = HalfToFloat(h);
    }
  } else {
    SM_CHECK(false) << "'" << path() << "' tensor '" << name << "' is " << e->dtype
                    << "; weights must be F32, BF16 or F16";
  }
}

namespace {

// Adds [begin, end) to `ranges` (disjoint, begin -> end), merging what touches it.
void AddRange(std::map<uint64_t, uint64_t>& ranges, uint64_t begin, uint64_t end) {
  if (begin == end) return;
  auto it = ranges.upper_bound(begin);
  if (it != ranges.begin() && std::prev(it)->second >= begin) --it;
  while (it != ranges.end() && it->first <= end) {
    begin = std::min(begin, it->first);
    end = std::max(end, it->second);
    it = ranges.erase(it);
  }
  ranges.emplace(begin, end);
}

std::string HeaderText(const std::vector<SafetensorsTensorSpec>& tensors,
                       const std::vector<uint64_t>& begin,
                       const std::map<std::string, std::string>& metadata) {
  Json header = Json::Object();
  Json meta = Json::Object();
  meta.Set("format", Json::String("pt"));
  for (const auto& [k, v] : metadata)
    if (k != "format") meta.Set(k, Json::String(v));
  header.Set("__metadata__", std::move(meta));
  for (size_t i = 0; i < tensors.size(); ++i) {
    Json shape = Json::Array();
    for (int64_t d : tensors[i].shape) shape.Push(Json::Integer(d));
    Json entry = Json::Object();
    entry.Set("dtype", Json::String(tensors[i].dtype));
    entry.Set("shape", std::move(shape));
    entry.Set("data_offsets", Json::Array({Json::Integer(static_cast<int64_t>(begin[i])),
                                           Json::Integer(static_cast<int64_t>(begin[i + 1]))}));
    SM_CHECK(header.Find(tensors[i].name) == nullptr)
        << "two tensors named '" << tensors[i].name << "'";
    header.Set(tensors[i].name, std::move(entry));
  }
  std::string text = header.Dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

}  // namespace

SafetensorsWriter::SafetensorsWriter(const std::string& path,
                                     std::vector<SafetensorsTensorSpec> tensors,
                                     const std::map<std::string, std::string>& metadata)
    : file_(path), tensors_(std::move(tensors)), written_(tensors_.size()) {
  begin_.push_back(0);
  for (const SafetensorsTensorSpec& t : tensors_) {
    const size_t item = DTypeBytes(t.dtype);
    SM_CHECK(item > 0) << "'" << path << "' tensor '" << t.name << "' has unknown dtype "
                       << t.dtype;
    uint64_t numel = 1;
    for (int64_t d : t.shape) {
      SM_CHECK(d >= 0) << "'" << path << "' tensor '" << t.name << "' has a negative dimension "
                       << d;
      numel *= static_cast<uint64_t>(d);
    }
    begin_.push_back(begin_.back() + numel * item);
  }
  const std::string text = HeaderText(tensors_, begin_, metadata);
  const uint64_t n = text.size();
  buffer_start_ = 8 + n;
  file_.Resize(buffer_start_ + begin_.back());
  file_.WriteAt(0, &n, 8);
  file_.WriteAt(8, text.data(), text.size());
}

void SafetensorsWriter::Write(size_t i, uint64_t offset, const void* data, size_t bytes) {
  SM_CHECK(i < tensors_.size()) << "'" << path() << "' has no tensor " << i << " (it has "
                                << tensors_.size() << ")";
  const uint64_t size = tensor_bytes(i);
  SM_CHECK(offset <= size && bytes <= size - offset)
      << "'" << path() << "': writing bytes [" << offset << ", " << offset + bytes
      << ") of tensor '" << tensors_[i].name << "' runs past its " << size << " bytes";
  if (bytes == 0) return;
  file_.WriteAt(buffer_start_ + begin_[i] + offset, data, bytes);
  AddRange(written_[i], offset, offset + bytes);
}

void SafetensorsWriter::Commit() {
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const uint64_t size = tensor_bytes(i);
    const auto& ranges = written_[i];
    if (size == 0 ||
        (ranges.size() == 1 && ranges.begin()->first == 0 && ranges.begin()->second == size))
      continue;
    // The first gap: before the first range, or after it.
    uint64_t gap = 0, gap_end = size;
    if (!ranges.empty() && ranges.begin()->first == 0) {
      gap = ranges.begin()->second;
      if (ranges.size() > 1) gap_end = std::next(ranges.begin())->first;
    } else if (!ranges.empty()) {
      gap_end = ranges.begin()->first;
    }
    SM_CHECK(false) << "'" << path() << "': bytes [" << gap << ", " << gap_end << ") of tensor '"
                    << tensors_[i].name << "' (" << size << " bytes) were never written";
  }
  file_.Commit();
}

void WriteSafetensors(const std::string& path, const std::vector<Tensor>& tensors, bool as_bf16,
                      const std::map<std::string, std::string>& metadata) {
  WriteSafetensors(path, tensors,
                   std::vector<std::string>(tensors.size(), as_bf16 ? "BF16" : "F32"), metadata);
}

void WriteSafetensors(const std::string& path, const std::vector<Tensor>& tensors,
                      const std::vector<std::string>& dtypes,
                      const std::map<std::string, std::string>& metadata,
                      const ParamAccess& access) {
  SM_CHECK(dtypes.size() == tensors.size())
      << "'" << path << "': " << dtypes.size() << " dtypes for " << tensors.size() << " tensors";
  std::vector<SafetensorsTensorSpec> specs;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    CheckDType(t, DType::kF32);
    SM_CHECK(dtypes[i] == "F32" || dtypes[i] == "BF16" || dtypes[i] == "F16")
        << "'" << path << "': tensor '" << t.name() << "' cannot be written as " << dtypes[i]
        << " (F32, BF16 or F16)";
    SafetensorsTensorSpec spec{t.name(), dtypes[i], {}};
    for (int d = 0; d < t.shape().ndim(); ++d) spec.shape.push_back(t.dim(d));
    specs.push_back(std::move(spec));
  }
  SafetensorsWriter writer(path, std::move(specs), metadata);
  std::vector<uint16_t> half;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    if (access) access.before(i, /*overwrite=*/false);
    if (dtypes[i] == "F32") {
      writer.Write(i, 0, t.data(), t.bytes());
    } else {
      half.resize(t.numel());
      const bool bf16 = dtypes[i] == "BF16";
      for (int64_t k = 0; k < t.numel(); ++k)
        half[k] = bf16 ? FloatToBf16(t.f32()[k]) : FloatToF16(t.f32()[k]);
      writer.Write(i, 0, half.data(), half.size() * sizeof(uint16_t));
    }
    if (access) access.after(i, /*changed=*/false);
  }
  writer.Commit();
}

}  // namespace seqmesh
