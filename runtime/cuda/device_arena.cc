#include "runtime/cuda/device_arena.h"

#include "runtime/cuda/cuda_check.h"

namespace seqmesh::cuda {

void DeviceArena::Free::operator()(void* p) const { cudaFree(p); }

Tensor* DeviceArena::Add(std::string name, DType dtype, Shape shape, bool packed) {
  SM_CHECK(!allocated()) << "device arena '" << name_ << "': Add('" << name
                         << "') after Allocate()";
  tensors_.emplace_back(std::move(name), dtype, shape, nullptr, Device::kCuda);
  packed_.push_back(packed);
  return &tensors_.back();
}

void DeviceArena::Allocate() {
  SM_CHECK(!allocated()) << "device arena '" << name_ << "' allocated twice";
  const ArenaLayout layout = LayOutArena(tensors_, packed_);
  const size_t bytes = layout.bytes ? layout.bytes : 64;
  void* base = nullptr;
  SM_CHECK_CUDA(cudaMalloc(&base, bytes))
      << "allocating " << bytes << " bytes of device memory for arena '" << name_
      << "'; use a smaller model or micro-batch, or a GPU with more memory";
  base_ = std::unique_ptr<void, Free>(base);
  SM_CHECK_CUDA(cudaMemset(base, 0, bytes)) << "zeroing arena '" << name_ << "'";
  bytes_ = layout.bytes;
  char* p = static_cast<char*>(base);
  for (size_t i = 0; i < tensors_.size(); ++i) {
    Tensor& t = tensors_[i];
    t = Tensor(t.name(), t.dtype(), t.shape(), p + layout.offsets[i], Device::kCuda);
  }
}

const Tensor& DeviceArena::Find(const std::string& name) const {
  for (const Tensor& t : tensors_)
    if (t.name() == name) return t;
  SM_CHECK(false) << "device arena '" << name_ << "' has no tensor named '" << name << "'";
  __builtin_unreachable();
}

namespace {
void CheckPair(const Tensor& dst, const Tensor& src, Device dst_device, Device src_device) {
  CheckDevice(dst, dst_device);
  CheckDevice(src, src_device);
  SM_CHECK(dst.dtype() == src.dtype() && dst.shape() == src.shape())
      << "copy of '" << src.name() << "' " << DTypeName(src.dtype()) << " "
      << src.shape().ToString() << " into '" << dst.name() << "' " << DTypeName(dst.dtype()) << " "
      << dst.shape().ToString() << ": dtype and shape must match";
}
}  // namespace

void CopyToDevice(const Tensor& device_dst, const Tensor& host_src) {
  CheckPair(device_dst, host_src, Device::kCuda, Device::kCpu);
  SM_CHECK_CUDA(
      cudaMemcpy(device_dst.data(), host_src.data(), host_src.bytes(), cudaMemcpyHostToDevice))
      << "copying '" << host_src.name() << "' to the device";
}

void CopyToHost(const Tensor& host_dst, const Tensor& device_src) {
  CheckPair(host_dst, device_src, Device::kCpu, Device::kCuda);
  SM_CHECK_CUDA(
      cudaMemcpy(host_dst.data(), device_src.data(), device_src.bytes(), cudaMemcpyDeviceToHost))
      << "copying '" << device_src.name() << "' to the host";
}

}  // namespace seqmesh::cuda
