// DeviceArena: the host Arena's shape (runtime/tensor.h) on the current CUDA device: Add() every
// tensor first (the pointers returned stay valid), then Allocate() once: one cudaMalloc, zeroed,
// carved with the host's layout rule (LayOutArena), its tensors on Device::kCuda. Move-only.
//
// CopyToDevice / CopyToHost move whole tensors between a host tensor and a device tensor of the
// same dtype and shape (synchronous: for setup, tests and checkpoints, not the step's hot loop).
#pragma once

#include <deque>
#include <memory>
#include <string>

#include "runtime/tensor.h"

namespace seqmesh::cuda {

class DeviceArena {
 public:
  explicit DeviceArena(std::string name = "device arena") : name_(std::move(name)) {}
  DeviceArena(DeviceArena&&) = default;
  DeviceArena& operator=(DeviceArena&&) = default;
  DeviceArena(const DeviceArena&) = delete;
  DeviceArena& operator=(const DeviceArena&) = delete;

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
    void operator()(void* p) const;
  };
  std::string name_;
  std::deque<Tensor> tensors_;
  std::deque<bool> packed_;
  std::unique_ptr<void, Free> base_;
  size_t bytes_ = 0;
};

void CopyToDevice(const Tensor& device_dst, const Tensor& host_src);
void CopyToHost(const Tensor& host_dst, const Tensor& device_src);

}  // namespace seqmesh::cuda
