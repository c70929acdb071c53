// Tensor: shape, dtype, device and a reference-counted storage.
// Storage is contiguous (row-major); a tensor may be a view at an element
// offset into a larger storage (the parameter store hands out such views).
#pragma once
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

namespace vitscuda {

namespace autograd {
struct GradSlot;
}

enum class DType { F32, F64 };
enum class Device { CPU, CUDA };

size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);
const char* device_name(Device device);

template <typename T> struct DTypeOf;
template <> struct DTypeOf<float> { static constexpr DType value = DType::F32; };
template <> struct DTypeOf<double> { static constexpr DType value = DType::F64; };

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& shape);
int64_t shape_numel(const Shape& shape);

// Raw memory owned by an allocator; freed when the last tensor drops it.
struct Storage {
  void* data = nullptr;
  size_t bytes = 0;
  Device device = Device::CPU;
  Storage(size_t bytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
};

// Live and peak bytes of host tensor memory (what a training step's peak reports). Device
// memory is counted by the DeviceAllocator (engine/device_allocator.h).
struct MemoryStats {
  size_t live_bytes = 0;
  size_t peak_bytes = 0;
};
MemoryStats cpu_memory_stats();
void reset_cpu_peak_memory();

class Tensor {
 public:
  Tensor() = default;

  static Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = Device::CPU);
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32, Device device = Device::CPU);
  static Tensor full(const Shape& shape, double value, DType dtype = DType::F32, Device device = Device::CPU);
  static Tensor from_vector(const std::vector<float>& values, const Shape& shape);
  static Tensor from_vector(const std::vector<double>& values, const Shape& shape);
  // A view of `shape` at element `offset` into `storage` (no copy).
  static Tensor view_of(std::shared_ptr<Storage> storage, size_t offset, const Shape& shape, DType dtype);

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int ndim() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int i) const;  // negative i counts from the end
  int64_t numel() const { return numel_; }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  size_t nbytes() const { return static_cast<size_t>(numel_) * dtype_size(dtype_); }
  const std::shared_ptr<Storage>& storage() const { return storage_; }
  size_t offset() const { return offset_; }

  void* raw() const;
  template <typename T> T* data() const {
    check_dtype(DTypeOf<T>::value);
    return static_cast<T*>(raw());
  }

  // Same storage, new shape (one dimension may be -1).
  Tensor reshape(const Shape& shape) const;
  Tensor clone() const;
  Tensor to(DType dtype) const;
  // A copy on `device` (the same tensor when it is already there).
  Tensor to(Device device) const;
  std::vector<float> to_float_vector() const;
  void fill(double value);
  void copy_from(const Tensor& other);  // same numel; converts dtype (on the CPU); copies across devices

  std::string describe() const;  // "f32[2, 3] cpu"

  // Autograd: a tensor that needs a gradient carries the slot its gradient accumulates in
  // (reshapes share it). detach() drops it.
  const std::shared_ptr<autograd::GradSlot>& grad_slot() const { return grad_slot_; }
  void set_grad_slot(std::shared_ptr<autograd::GradSlot> slot) { grad_slot_ = std::move(slot); }
  bool requires_grad() const { return grad_slot_ != nullptr; }
  Tensor detach() const {
    Tensor t = *this;
    t.grad_slot_.reset();
    return t;
  }

 private:
  void check_dtype(DType expected) const;
  std::shared_ptr<Storage> storage_;
  size_t offset_ = 0;  // in elements
  Shape shape_;
  int64_t numel_ = 0;
  DType dtype_ = DType::F32;
  Device device_ = Device::CPU;
  std::shared_ptr<autograd::GradSlot> grad_slot_;
};

}  // namespace vitscuda
