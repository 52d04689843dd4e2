// Tensor: a named, typed, shaped view of memory it does not own. Memory is owned by an Arena
// (one allocation carved into named views, STYLE.md rule 6) or by the caller.
//
// Shape checks name the tensor: CheckShape(q, {T, 64}) fails with
//   "tensor 'q' has shape [12, 32], expected [12, 64]".
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "runtime/check.h"
#include "runtime/device.h"
#include "runtime/dtype.h"

namespace seqmesh {

constexpr int kMaxDims = 4;

class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims);
  int ndim() const { return ndim_; }
  int64_t operator[](int i) const { return dims_[i]; }
  int64_t numel() const;
  bool operator==(const Shape& o) const;
  std::string ToString() const;

 private:
  std::array<int64_t, kMaxDims> dims_{};
  int ndim_ = 0;
};

class Tensor {
 public:
  Tensor() = default;
  Tensor(std::string name, DType dtype, Shape shape, void* data, Device device = Device::kCpu)
      : name_(std::move(name)), dtype_(dtype), shape_(shape), data_(data), device_(device) {}

  const std::string& name() const { return name_; }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int64_t dim(int i) const { return shape_[i]; }
  int64_t numel() const { return shape_.numel(); }
  size_t bytes() const { return static_cast<size_t>(numel()) * DTypeSize(dtype_); }
  void* data() const { return data_; }
  Device device() const { return device_; }

  float* f32() const;
  int32_t* i32() const;
  uint16_t* bf16() const;

  // A view of rows [begin, end) of the first dimension, named "name[begin:end]".
  Tensor Rows(int64_t begin, int64_t end) const;

 private:
  std::string name_;
  DType dtype_ = DType::kF32;
  Shape shape_;
  void* data_ = nullptr;
  Device device_ = Device::kCpu;
};

void CheckShape(const Tensor& t, std::initializer_list<int64_t> expected);
void CheckDType(const Tensor& t, DType expected);
// "tensor 'q' is on cuda, expected cpu".
void CheckDevice(const Tensor& t, Device expected);

// The layout of every arena (the host Arena here, cuda::DeviceArena on a GPU): tensors in the
// order added, each at a 64-byte-aligned offset unless `packed` (directly after the previous
// one); `bytes` is the total rounded up to 64.
struct ArenaLayout {
  std::vector<size_t> offsets;
  size_t bytes = 0;
};
ArenaLayout LayOutArena(const std::deque<Tensor>& tensors, const std::deque<bool>& packed);

// Owns one 64-byte-aligned, zero-initialized allocation of host memory (its tensors are on
// Device::kCpu) carved into named tensors. Add() every
// tensor first (pointers returned stay valid), then Allocate() once. Move-only.
class Arena {
 public:
  explicit Arena(std::string name = "arena") : name_(std::move(name)) {}
  Arena(Arena&&) = default;
  Arena& operator=(Arena&&) = default;
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  // `packed` places the tensor directly after the previous one (no alignment padding), so that
  // adjacent tensors can be used as one (the model fuses q/k/v and gate/up this way).
  Tensor* Add(std::string name, DType dtype, Shape shape, bool packed = false);
  void Allocate();

  bool allocated() const { return base_ != nullptr; }
  size_t bytes() const { return bytes_; }
  void* base() const { return base_.get(); }
  std::deque<Tensor>& tensors() { return tensors_; }
  const std::deque<Tensor>& tensors() const { return tensors_; }
  const Tensor& Find(const std::string& name) const;

 private:
  struct Free {
    size_t mapped;  // the mapping's size; 0: aligned_alloc (value-initialized: 0)
    void operator()(void* p) const;
  };
  std::string name_;
  std::deque<Tensor> tensors_;
  std::deque<bool> packed_;
  std::unique_ptr<void, Free> base_;
  size_t bytes_ = 0;
};

// Sets `bytes` at `data` to zero and gives the whole pages among them back to the OS (they read
// as zero and cost no memory until written again): memory whose contents were handed on.
void ZeroAndRelease(void* data, size_t bytes);

// An aligned, zero-initialized buffer of floats for scratch that is not part of a named arena.
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t count);
  float* data() const { return data_.get(); }
  size_t size() const { return size_; }
  // Grows (never shrinks); contents are not preserved.
  void Reserve(size_t count);

 private:
  struct Free {
    size_t mapped;
    void operator()(float* p) const;
  };
  std::unique_ptr<float, Free> data_;
  size_t size_ = 0;
};

}  // namespace seqmesh
