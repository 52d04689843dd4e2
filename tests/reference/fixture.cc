#include "tests/reference/fixture.h"

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>

namespace seqmesh::testing {
namespace {

static_assert(std::endian::native == std::endian::little,
              "fixtures are little-endian; this reader assumes a little-endian host");

constexpr char kMagic[4] = {'S', 'M', 'F', 'X'};
constexpr uint32_t kVersion = 1;
constexpr uint32_t kFileF32 = 0;
constexpr uint32_t kFileI32 = 1;
constexpr uint32_t kMaxNameLength = 4096;

// A bounds-checked cursor over the file's bytes. `what` describes the field being read, so a
// truncated file says which field of which entry ran past the end.
class Cursor {
 public:
  Cursor(const std::string& path, const std::vector<char>& data) : path_(path), data_(data) {}

  size_t offset() const { return pos_; }
  size_t remaining() const { return data_.size() - pos_; }

  void Need(size_t n, const std::string& what) const {
    SM_CHECK(n <= remaining()) << "fixture '" << path_ << "' is truncated: " << what << " needs "
                               << n << " bytes at offset " << pos_ << ", but only " << remaining()
                               << " remain";
  }
  void Read(void* out, size_t n, const std::string& what) {
    Need(n, what);
    std::memcpy(out, data_.data() + pos_, n);
    pos_ += n;
  }
  uint32_t U32(const std::string& what) {
    uint32_t v;
    Read(&v, sizeof(v), what);
    return v;
  }
  int64_t I64(const std::string& what) {
    int64_t v;
    Read(&v, sizeof(v), what);
    return v;
  }

 private:
  const std::string& path_;
  const std::vector<char>& data_;
  size_t pos_ = 0;
};

Shape MakeShape(const int64_t* d, int ndim) {
  switch (ndim) {
    case 0:
      return Shape();
    case 1:
      return Shape{d[0]};
    case 2:
      return Shape{d[0], d[1]};
    case 3:
      return Shape{d[0], d[1], d[2]};
    default:
      return Shape{d[0], d[1], d[2], d[3]};
  }
}

}  // namespace

Fixture Fixture::Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  SM_CHECK(in.good()) << "cannot open fixture '" << path
                      << "' (regenerate with /usr/bin/python3 tests/reference/make_fixtures.py)";
  std::vector<char> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  SM_CHECK(!in.bad()) << "error reading fixture '" << path << "'";

  Fixture f;
  f.path_ = path;
  Cursor c(path, data);

  char magic[4];
  c.Read(magic, 4, "the magic");
  SM_CHECK(std::memcmp(magic, kMagic, 4) == 0)
      << "fixture '" << path << "' has bad magic '" << std::string(magic, 4)
      << "' (expected 'SMFX'); not a seqmesh fixture";
  uint32_t version = c.U32("the version");
  SM_CHECK(version == kVersion) << "fixture '" << path << "' has unsupported version " << version
                                << " (this reader knows version " << kVersion << ")";
  uint32_t count = c.U32("the entry count");

  f.entries_.reserve(count);
  for (uint32_t i = 0; i < count; ++i) {
    std::string where = "entry " + std::to_string(i);
    uint32_t name_len = c.U32(where + "'s name length");
    SM_CHECK(name_len > 0 && name_len <= kMaxNameLength)
        << "fixture '" << path << "': " << where << " has name length " << name_len << " at offset "
        << c.offset() - 4 << " (expected 1.." << kMaxNameLength << ")";
    std::string name(name_len, '\0');
    c.Read(name.data(), name_len, where + "'s name");
    where = "entry " + std::to_string(i) + " '" + name + "'";

    uint32_t file_dtype = c.U32(where + "'s dtype");
    SM_CHECK(file_dtype == kFileF32 || file_dtype == kFileI32)
        << "fixture '" << path << "': " << where << " has unknown dtype " << file_dtype
        << " (expected 0 = f32 or 1 = i32)";
    uint32_t ndim = c.U32(where + "'s ndim");
    SM_CHECK(ndim <= static_cast<uint32_t>(kMaxDims))
        << "fixture '" << path << "': " << where << " has " << ndim << " dimensions, at most "
        << kMaxDims << " are supported";
    int64_t dims[kMaxDims] = {};
    uint64_t numel = 1;
    for (uint32_t d = 0; d < ndim; ++d) {
      dims[d] = c.I64(where + "'s dims");
      SM_CHECK(dims[d] >= 0) << "fixture '" << path << "': " << where << " has negative dimension "
                             << dims[d];
      // Bounded before multiplying, so a corrupt dimension cannot overflow numel.
      SM_CHECK(dims[d] == 0 || numel <= data.size() / static_cast<uint64_t>(dims[d]))
          << "fixture '" << path << "' is truncated: " << where << " declares more elements "
          << "than the whole file (" << data.size() << " bytes) holds";
      numel *= static_cast<uint64_t>(dims[d]);
    }
    SM_CHECK(!f.index_.count(name))
        << "fixture '" << path << "' has a duplicate entry name '" << name << "' (entries "
        << f.index_.at(name) << " and " << i << ")";

    Entry& e = f.entries_.emplace_back();
    size_t nbytes = static_cast<size_t>(numel) * 4;
    e.bytes.resize(nbytes);
    c.Read(e.bytes.data(), nbytes, where + "'s data");
    e.tensor = Tensor(name, file_dtype == kFileF32 ? DType::kF32 : DType::kI32,
                      MakeShape(dims, static_cast<int>(ndim)), e.bytes.data());
    f.index_.emplace(std::move(name), f.entries_.size() - 1);
  }
  SM_CHECK(c.remaining() == 0) << "fixture '" << path << "' has " << c.remaining()
                               << " trailing bytes after its " << count << " entries";
  return f;
}

bool Fixture::Has(const std::string& name) const { return index_.count(name) != 0; }

const Tensor& Fixture::Get(const std::string& name) const {
  auto it = index_.find(name);
  SM_CHECK(it != index_.end()) << "fixture '" << path_ << "' has no entry '" << name << "'";
  return entries_[it->second].tensor;
}

const Tensor& Fixture::GetScalar(const std::string& name) const {
  const Tensor& t = Get(name);
  SM_CHECK(t.shape().ndim() == 0) << "fixture '" << path_ << "': entry '" << name
                                  << "' is not a scalar (shape " << t.shape().ToString() << ")";
  return t;
}

float Fixture::Scalar(const std::string& name) const {
  const Tensor& t = GetScalar(name);
  return t.dtype() == DType::kF32 ? *t.f32() : static_cast<float>(*t.i32());
}

int Fixture::ScalarInt(const std::string& name) const {
  const Tensor& t = GetScalar(name);
  if (t.dtype() == DType::kI32) return *t.i32();
  float v = *t.f32();
  SM_CHECK(std::nearbyint(v) == v && std::fabs(v) < 2147483648.0f)
      << "fixture '" << path_ << "': entry '" << name << "' is f32 " << v << ", not an integer";
  return static_cast<int>(v);
}

std::vector<std::string> Fixture::Names(const std::string& prefix) const {
  std::vector<std::string> out;
  for (const Entry& e : entries_)
    if (e.tensor.name().starts_with(prefix)) out.push_back(e.tensor.name());
  return out;
}

}  // namespace seqmesh::testing
