#include "runtime/tensor.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstdlib>
#include <sstream>
#include <vector>

namespace seqmesh {

std::string_view DTypeName(DType t) {
  switch (t) {
    case DType::kF32:
      return "f32";
    case DType::kBF16:
      return "bf16";
    case DType::kI32:
      return "i32";
  }
  return "?";
}

void FloatToBf16(const float* in, uint16_t* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = FloatToBf16(in[i]);
}
void Bf16ToFloat(const uint16_t* in, float* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = Bf16ToFloat(in[i]);
}

Shape::Shape(std::initializer_list<int64_t> dims) {
  SM_CHECK(dims.size() <= kMaxDims)
      << "a shape has at most " << kMaxDims << " dimensions, got " << dims.size();
  for (int64_t d : dims) {
    SM_CHECK(d >= 0) << "negative dimension " << d << " in a shape";
    dims_[ndim_++] = d;
  }
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < ndim_; ++i) n *= dims_[i];
  return n;
}

bool Shape::operator==(const Shape& o) const {
  if (ndim_ != o.ndim_) return false;
  for (int i = 0; i < ndim_; ++i)
    if (dims_[i] != o.dims_[i]) return false;
  return true;
}

std::string Shape::ToString() const {
  std::ostringstream os;
  os << "[";
  for (int i = 0; i < ndim_; ++i) os << (i ? ", " : "") << dims_[i];
  os << "]";
  return os.str();
}

float* Tensor::f32() const {
  SM_CHECK(dtype_ == DType::kF32) << "tensor '" << name_ << "' is " << DTypeName(dtype_)
                                  << ", expected f32";
  return static_cast<float*>(data_);
}
int32_t* Tensor::i32() const {
  SM_CHECK(dtype_ == DType::kI32) << "tensor '" << name_ << "' is " << DTypeName(dtype_)
                                  << ", expected i32";
  return static_cast<int32_t*>(data_);
}
uint16_t* Tensor::bf16() const {
  SM_CHECK(dtype_ == DType::kBF16)
      << "tensor '" << name_ << "' is " << DTypeName(dtype_) << ", expected bf16";
  return static_cast<uint16_t*>(data_);
}

Tensor Tensor::Rows(int64_t begin, int64_t end) const {
  SM_CHECK(shape_.ndim() >= 1 && 0 <= begin && begin <= end && end <= shape_[0])
      << "rows [" << begin << ", " << end << ") out of range for tensor '" << name_ << "' of shape "
      << shape_.ToString();
  int64_t row = shape_[0] ? numel() / shape_[0] : 0;
  Shape s;
  switch (shape_.ndim()) {
    case 1:
      s = Shape{end - begin};
      break;
    case 2:
      s = Shape{end - begin, shape_[1]};
      break;
    case 3:
      s = Shape{end - begin, shape_[1], shape_[2]};
      break;
    default:
      s = Shape{end - begin, shape_[1], shape_[2], shape_[3]};
  }
  std::ostringstream n;
  n << name_ << "[" << begin << ":" << end << "]";
  return Tensor(n.str(), dtype_, s,
                static_cast<char*>(data_) + begin * row * static_cast<int64_t>(DTypeSize(dtype_)),
                device_);
}

void CheckShape(const Tensor& t, std::initializer_list<int64_t> expected) {
  Shape want(expected);
  SM_CHECK(t.shape() == want) << "tensor '" << t.name() << "' has shape " << t.shape().ToString()
                              << ", expected " << want.ToString();
}

void CheckDType(const Tensor& t, DType expected) {
  SM_CHECK(t.dtype() == expected) << "tensor '" << t.name() << "' is " << DTypeName(t.dtype())
                                  << ", expected " << DTypeName(expected);
}

void CheckDevice(const Tensor& t, Device expected) {
  SM_CHECK(t.device() == expected) << "tensor '" << t.name() << "' is on " << DeviceName(t.device())
                                   << ", expected " << DeviceName(expected);
}

namespace {
constexpr size_t kAlign = 64;
constexpr size_t kPage = 4096;
// From this size on, memory comes straight from mmap: its zero pages cost nothing until they are
// touched, so resident memory is what a run uses (a gradient arena handed to an SSD store and
// given back, an activation arena sized for the longest micro-batch), not what it reserved.
constexpr size_t kMapFrom = size_t{1} << 20;
size_t RoundUp(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }
// Zeroed memory of at least `bytes`; *mapped is the mapping's size (0: from aligned_alloc).
void* AlignedZeroed(size_t bytes, const std::string& what, size_t* mapped) {
  const size_t n = RoundUp(bytes ? bytes : 1);
  if (n >= kMapFrom) {
    const size_t len = (n + kPage - 1) / kPage * kPage;
    void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    SM_CHECK(p != MAP_FAILED) << "out of memory mapping " << bytes << " bytes for " << what << ": "
                              << std::strerror(errno);
    *mapped = len;
    return p;
  }
  void* p = std::aligned_alloc(kAlign, n);
  SM_CHECK(p != nullptr) << "out of memory allocating " << bytes << " bytes for " << what;
  std::memset(p, 0, n);
  *mapped = 0;
  return p;
}
void FreeAligned(void* p, size_t mapped) {
  if (mapped > 0)
    munmap(p, mapped);
  else
    std::free(p);
}
}  // namespace

void ZeroAndRelease(void* data, size_t bytes) {
  char* p = static_cast<char*>(data);
  const uintptr_t begin = reinterpret_cast<uintptr_t>(p), end = begin + bytes;
  const uintptr_t lo = (begin + kPage - 1) / kPage * kPage, hi = end / kPage * kPage;
  if (hi <= lo) {
    std::memset(p, 0, bytes);
    return;
  }
  std::memset(p, 0, lo - begin);
  std::memset(reinterpret_cast<char*>(hi), 0, end - hi);
  // Private anonymous pages read as zero after MADV_DONTNEED (Linux): no memset, no residency.
  SM_CHECK(madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED) == 0)
      << "madvise(MADV_DONTNEED) of " << (hi - lo) << " bytes failed: " << std::strerror(errno);
}

ArenaLayout LayOutArena(const std::deque<Tensor>& tensors, const std::deque<bool>& packed) {
  ArenaLayout layout;
  layout.offsets.resize(tensors.size());
  size_t total = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (!packed[i]) total = RoundUp(total);
    layout.offsets[i] = total;
    total += tensors[i].bytes();
  }
  layout.bytes = RoundUp(total);
  return layout;
}

void Arena::Free::operator()(void* p) const { FreeAligned(p, mapped); }
void AlignedBuffer::Free::operator()(float* p) const { FreeAligned(p, mapped); }

Tensor* Arena::Add(std::string name, DType dtype, Shape shape, bool packed) {
  SM_CHECK(!allocated()) << "arena '" << name_ << "': Add('" << name << "') after Allocate()";
  tensors_.emplace_back(std::move(name), dtype, shape, nullptr);
  packed_.push_back(packed);
  return &tensors_.back();
}

void Arena::Allocate() {
  SM_CHECK(!allocated()) << "arena '" << name_ << "' allocated twice";
  const ArenaLayout layout = LayOutArena(tensors_, packed_);
  const std::vector<size_t>& offsets = layout.offsets;
  const size_t total = layout.bytes;
  size_t mapped = 0;
  void* base = AlignedZeroed(total, "arena '" + name_ + "'", &mapped);
  base_ = std::unique_ptr<void, Free>(base, Free{mapped});
  bytes_ = total;
  char* p = static_cast<char*>(base_.get());
  for (size_t i = 0; i < tensors_.size(); ++i) {
    Tensor& t = tensors_[i];
    t = Tensor(t.name(), t.dtype(), t.shape(), p + offsets[i]);
  }
}

const Tensor& Arena::Find(const std::string& name) const {
  for (const Tensor& t : tensors_)
    if (t.name() == name) return t;
  SM_CHECK(false) << "arena '" << name_ << "' has no tensor named '" << name << "'";
  __builtin_unreachable();
}

AlignedBuffer::AlignedBuffer(size_t count) { Reserve(count); }

void AlignedBuffer::Reserve(size_t count) {
  if (count <= size_) return;
  size_t mapped = 0;
  float* data =
      static_cast<float*>(AlignedZeroed(count * sizeof(float), "scratch buffer", &mapped));
  data_ = std::unique_ptr<float, Free>(data, Free{mapped});
  size_ = count;
}

}  // namespace seqmesh
