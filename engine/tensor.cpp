#include "engine/tensor.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <stdexcept>

#include "common/error.h"
#include "engine/device_allocator.h"
#include "engine/host_allocator.h"
#include "kernels/backend.h"
#include "kernels/device.h"
#include "kernels/elementwise.h"

namespace vitscuda {

size_t dtype_size(DType dtype) { return dtype == DType::F32 ? 4 : 8; }
const char* dtype_name(DType dtype) { return dtype == DType::F32 ? "f32" : "f64"; }
const char* device_name(Device device) { return device == Device::CPU ? "cpu" : "cuda"; }

std::string shape_str(const Shape& shape) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << "]";
  return os.str();
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    VC_CHECK(d >= 0, "negative dimension in shape " << shape_str(shape));
    n *= d;
  }
  return n;
}

namespace {
std::atomic<size_t> g_cpu_live{0};
std::atomic<size_t> g_cpu_peak{0};
}  // namespace

MemoryStats cpu_memory_stats() { return {g_cpu_live.load(), g_cpu_peak.load()}; }
void reset_cpu_peak_memory() { g_cpu_peak.store(g_cpu_live.load()); }

Storage::Storage(size_t nbytes, Device dev) : bytes(nbytes), device(dev) {
  if (dev == Device::CUDA) {
    VC_CHECK(kernels::built_with_cuda(), "a CUDA tensor was requested, but this vitscuda was built without CUDA");
    data = DeviceAllocator::instance().allocate(nbytes, "tensor storage");
    return;
  }
  data = HostAllocator::instance().allocate(nbytes);
  if (!data) VC_FAIL("out of host memory allocating " << nbytes << " bytes");
  size_t live = g_cpu_live.fetch_add(nbytes) + nbytes;
  size_t peak = g_cpu_peak.load();
  while (live > peak && !g_cpu_peak.compare_exchange_weak(peak, live)) {
  }
}

Storage::~Storage() {
  if (device == Device::CUDA) {
    DeviceAllocator::instance().release(data);
    return;
  }
  HostAllocator::instance().release(data, bytes);
  g_cpu_live.fetch_sub(bytes);
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  Tensor t;
  t.shape_ = shape;
  t.numel_ = shape_numel(shape);
  t.dtype_ = dtype;
  t.device_ = device;
  t.storage_ = std::make_shared<Storage>(static_cast<size_t>(t.numel_) * dtype_size(dtype), device);
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  if (device == Device::CUDA)
    kernels::device_memset_zero(t.raw(), t.nbytes());
  else
    std::memset(t.raw(), 0, t.nbytes());
  return t;
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill(value);
  return t;
}

Tensor Tensor::from_vector(const std::vector<float>& values, const Shape& shape) {
  Tensor t = empty(shape, DType::F32);
  VC_CHECK(static_cast<int64_t>(values.size()) == t.numel(),
           "from_vector: " << values.size() << " values for shape " << shape_str(shape));
  if (t.nbytes() > 0) std::memcpy(t.raw(), values.data(), t.nbytes());  // an empty vector's data() may be null
  return t;
}

Tensor Tensor::from_vector(const std::vector<double>& values, const Shape& shape) {
  Tensor t = empty(shape, DType::F64);
  VC_CHECK(static_cast<int64_t>(values.size()) == t.numel(),
           "from_vector: " << values.size() << " values for shape " << shape_str(shape));
  if (t.nbytes() > 0) std::memcpy(t.raw(), values.data(), t.nbytes());  // an empty vector's data() may be null
  return t;
}

Tensor Tensor::view_of(std::shared_ptr<Storage> storage, size_t offset, const Shape& shape, DType dtype) {
  Tensor t;
  t.shape_ = shape;
  t.numel_ = shape_numel(shape);
  t.dtype_ = dtype;
  t.device_ = storage->device;
  VC_CHECK((offset + static_cast<size_t>(t.numel_)) * dtype_size(dtype) <= storage->bytes,
           "view " << shape_str(shape) << " at offset " << offset << " exceeds storage of " << storage->bytes << " bytes");
  t.offset_ = offset;
  t.storage_ = std::move(storage);
  return t;
}

int64_t Tensor::dim(int i) const {
  int n = ndim();
  int j = i < 0 ? i + n : i;
  VC_CHECK(j >= 0 && j < n, "dimension " << i << " out of range for tensor " << describe());
  return shape_[j];
}

void* Tensor::raw() const {
  VC_CHECK(storage_, "use of an undefined tensor");
  return static_cast<char*>(storage_->data) + offset_ * dtype_size(dtype_);
}

void Tensor::check_dtype(DType expected) const {
  VC_CHECK(dtype_ == expected, "tensor " << describe() << " accessed as " << dtype_name(expected));
}

Tensor Tensor::reshape(const Shape& shape) const {
  Shape s = shape;
  int infer = -1;
  int64_t known = 1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      VC_CHECK(infer < 0, "reshape: more than one -1 in " << shape_str(shape));
      infer = static_cast<int>(i);
    } else {
      known *= s[i];
    }
  }
  if (infer >= 0) {
    VC_CHECK(known > 0 && numel_ % known == 0, "reshape " << describe() << " to " << shape_str(shape));
    s[infer] = numel_ / known;
  }
  VC_CHECK(shape_numel(s) == numel_, "reshape " << describe() << " to " << shape_str(shape) << ": element counts differ");
  Tensor t = *this;
  t.shape_ = s;
  return t;
}

Tensor Tensor::clone() const {
  Tensor t = empty(shape_, dtype_, device_);
  t.copy_from(*this);
  return t;
}

Tensor Tensor::to(Device device) const {
  if (device == device_) return *this;
  Tensor t = empty(shape_, dtype_, device);
  t.copy_from(*this);
  return t;
}

Tensor Tensor::to(DType dtype) const {
  Tensor t = empty(shape_, dtype, device_);
  t.copy_from(*this);
  return t;
}

std::vector<float> Tensor::to_float_vector() const {
  if (device_ == Device::CUDA) return to(Device::CPU).to_float_vector();
  std::vector<float> out(static_cast<size_t>(numel_));
  if (dtype_ == DType::F32) {
    std::memcpy(out.data(), raw(), nbytes());
  } else {
    const double* p = data<double>();
    for (int64_t i = 0; i < numel_; ++i) out[i] = static_cast<float>(p[i]);
  }
  return out;
}

void Tensor::fill(double value) {
  if (device_ == Device::CUDA) {
    VC_CHECK(dtype_ == DType::F32, "fill: CUDA tensors are float32 only, got " << describe());
#if VITSCUDA_HAVE_CUDA
    kernels::fill_cuda(data<float>(), numel_, static_cast<float>(value));
#endif
    return;
  }
  if (dtype_ == DType::F32) {
    float* p = data<float>();
    for (int64_t i = 0; i < numel_; ++i) p[i] = static_cast<float>(value);
  } else {
    double* p = data<double>();
    for (int64_t i = 0; i < numel_; ++i) p[i] = value;
  }
}

void Tensor::copy_from(const Tensor& other) {
  VC_CHECK(other.numel() == numel_, "copy_from: " << other.describe() << " into " << describe());
  if (device_ == Device::CUDA || other.device_ == Device::CUDA) {
    VC_CHECK(other.dtype_ == dtype_, "copy_from: " << other.describe() << " into " << describe()
                                                   << ": dtype conversion happens on the CPU; convert first");
    if (device_ == Device::CUDA && other.device_ == Device::CUDA)
      kernels::copy_device_to_device(raw(), other.raw(), nbytes());
    else if (device_ == Device::CUDA)
      kernels::copy_host_to_device(raw(), other.raw(), nbytes());
    else
      kernels::copy_device_to_host(raw(), other.raw(), nbytes());
    return;
  }
  if (other.dtype_ == dtype_) {
    std::memmove(raw(), other.raw(), nbytes());
  } else if (dtype_ == DType::F32) {
    const double* s = other.data<double>();
    float* d = data<float>();
    for (int64_t i = 0; i < numel_; ++i) d[i] = static_cast<float>(s[i]);
  } else {
    const float* s = other.data<float>();
    double* d = data<double>();
    for (int64_t i = 0; i < numel_; ++i) d[i] = s[i];
  }
}

std::string Tensor::describe() const {
  std::ostringstream os;
  os << dtype_name(dtype_) << shape_str(shape_) << " " << device_name(device_);
  return os.str();
}

}  // namespace vitscuda
