#include "kernels/cpu/onednn_conv.h"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <dnnl.hpp>

#include "common/error.h"

namespace vitscuda::kernels::detail {

namespace {

using dnnl::memory;
using Tag = memory::format_tag;
constexpr memory::data_type kF32 = memory::data_type::f32;

dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

std::string describe(const Conv1dGeometry& g) {
  return "B=" + std::to_string(g.B) + " Cin=" + std::to_string(g.Cin) + " Tin=" + std::to_string(g.Tin) +
         " Cout=" + std::to_string(g.Cout) + " K=" + std::to_string(g.K) + " stride=" + std::to_string(g.stride) +
         " pad=(" + std::to_string(g.pad_left) + "," + std::to_string(g.pad_right) +
         ") dilation=" + std::to_string(g.dilation) + " groups=" + std::to_string(g.groups);
}

// oneDNN's implementations are tried best first; a geometry its JIT kernels do not take falls through to its
// reference loops or im2col gemms ("x64:gemm:jit"), which our own kernels match or beat. Only the JIT ones are
// used. (Its deconvolutions were tried for conv_transpose1d and left out: at HiFi-GAN's kernel-16 / stride-8
// upsamplers oneDNN 2.6 has only the gemm fallback, slower than ours, and at kernel 4 / stride 2 its JIT kernel
// took 1.4-1.7x our forward's time and the same backward time, 2 threads, batch 4.)
bool is_jit(const char* impl) { return std::strncmp(impl, "jit", 3) == 0; }

// The user-side (plain) layouts and the primitives of one geometry, made once: a primitive descriptor costs
// tens of microseconds to create, a convolution runs hundreds of times per training step.
struct Conv1dPrimitives {
  memory::desc x, w, y;
  bool usable = false;  // oneDNN has a JIT forward for the geometry
  dnnl::convolution_forward::primitive_desc forward_pd;
  dnnl::convolution_forward forward;
  bool backward_made = false, backward_usable = false;
  dnnl::convolution_backward_data::primitive_desc backward_data_pd;
  dnnl::convolution_backward_data backward_data;
  dnnl::convolution_backward_weights::primitive_desc backward_weights_pd;
  dnnl::convolution_backward_weights backward_weights;
};

using Key = std::array<int64_t, 10>;

Key key_of(const Conv1dGeometry& g) {
  return {g.B, g.Cin, g.Tin, g.Cout, g.K, g.stride, g.pad_left, g.pad_right, g.dilation, g.groups};
}

// Buffers in oneDNN's layouts, grown to the largest size asked for and kept: allocating tens of megabytes afresh
// for every call would fault the pages in every time. Activations take turns in three: the forward's input and
// output, the backward's dy, dx and (for the weight gradient) x, of which at most three are alive at once.
enum Slot { kActivations0, kActivations1, kActivations2, kWeights, kWeightsGrad, kSlots };

class Workspace {
 public:
  void* get(Slot slot, size_t bytes) {
    Buffer& b = buffers_[slot];
    if (bytes > b.capacity) {
      const size_t rounded = (bytes + 4095) / 4096 * 4096;
      void* p = std::aligned_alloc(64, rounded);
      VC_CHECK(p, "oneDNN convolution: cannot allocate a " << rounded << "-byte work buffer");
      b.data.reset(p);
      b.capacity = rounded;
    }
    return b.data.get();
  }

 private:
  struct Free {
    void operator()(void* p) const { std::free(p); }
  };
  struct Buffer {
    std::unique_ptr<void, Free> data;
    size_t capacity = 0;
  };
  std::array<Buffer, kSlots> buffers_;
};

// Every call goes through this lock: the cache and the work buffers are shared, and each convolution is
// parallel inside, so concurrent callers gain nothing by overlapping.
std::mutex g_mutex;
std::map<Key, std::unique_ptr<Conv1dPrimitives>> g_cache;
Workspace g_workspace;
int64_t g_runs = 0;

// Whole-utterance training meets a new length with almost every batch; the cache is emptied when it grows past
// this many geometries rather than growing with the corpus.
constexpr size_t kMaxCachedGeometries = 512;

// What the forward's and the backward's operation descriptors share: the tensors with their layouts left to
// oneDNN, and the geometry in its terms.
struct OperationShape {
  memory::desc any_x, any_w, any_y;
  memory::dims strides, dilates, pad_l, pad_r;
};

OperationShape operation_shape(const Conv1dGeometry& g, const memory::desc& w) {
  // oneDNN counts dilation from 0 (no gaps).
  return {memory::desc({g.B, g.Cin, g.Tin}, kF32, Tag::any), memory::desc(w.dims(), kF32, Tag::any),
          memory::desc({g.B, g.Cout, g.Tout}, kF32, Tag::any), {g.stride}, {g.dilation - 1}, {g.pad_left},
          {g.pad_right}};
}

Conv1dPrimitives& primitives_for(const Conv1dGeometry& g) {
  const Key key = key_of(g);
  if (g_cache.size() >= kMaxCachedGeometries && !g_cache.count(key)) g_cache.clear();
  std::unique_ptr<Conv1dPrimitives>& entry = g_cache[key];
  if (entry) return *entry;
  entry = std::make_unique<Conv1dPrimitives>();
  Conv1dPrimitives& p = *entry;
  p.x = memory::desc({g.B, g.Cin, g.Tin}, kF32, Tag::ncw);
  p.y = memory::desc({g.B, g.Cout, g.Tout}, kF32, Tag::ncw);
  p.w = g.groups == 1 ? memory::desc({g.Cout, g.Cin, g.K}, kF32, Tag::oiw)
                      : memory::desc({g.groups, g.Cout / g.groups, g.Cin / g.groups, g.K}, kF32, Tag::goiw);
  const OperationShape o = operation_shape(g, p.w);
  const memory::desc bias({g.Cout}, kF32, Tag::x);
  try {
    const dnnl::convolution_forward::desc desc(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
                                               o.any_x, o.any_w, bias, o.any_y, o.strides, o.dilates, o.pad_l, o.pad_r);
    p.forward_pd = dnnl::convolution_forward::primitive_desc(desc, cpu_engine(), /*allow_empty=*/true);
    if (!p.forward_pd || !is_jit(p.forward_pd.impl_info_str())) return p;
    p.forward = dnnl::convolution_forward(p.forward_pd);
  } catch (const dnnl::error&) {
    return p;  // a geometry oneDNN's descriptors reject: our kernels run it
  }
  p.usable = true;
  return p;
}

void make_backward(const Conv1dGeometry& g, Conv1dPrimitives& p) {
  p.backward_made = true;
  const OperationShape o = operation_shape(g, p.w);
  try {
    const dnnl::convolution_backward_data::desc data(dnnl::algorithm::convolution_direct, o.any_x, o.any_w, o.any_y,
                                                     o.strides, o.dilates, o.pad_l, o.pad_r);
    p.backward_data_pd =
        dnnl::convolution_backward_data::primitive_desc(data, cpu_engine(), p.forward_pd, /*allow_empty=*/true);
    // The bias gradient is the caller's (one reduction over dy, shared with the other paths).
    const dnnl::convolution_backward_weights::desc weights(dnnl::algorithm::convolution_direct, o.any_x, o.any_w,
                                                           o.any_y, o.strides, o.dilates, o.pad_l, o.pad_r);
    p.backward_weights_pd =
        dnnl::convolution_backward_weights::primitive_desc(weights, cpu_engine(), p.forward_pd, /*allow_empty=*/true);
    if (!p.backward_data_pd || !p.backward_weights_pd || !is_jit(p.backward_data_pd.impl_info_str()) ||
        !is_jit(p.backward_weights_pd.impl_info_str()))
      return;
    p.backward_data = dnnl::convolution_backward_data(p.backward_data_pd);
    p.backward_weights = dnnl::convolution_backward_weights(p.backward_weights_pd);
  } catch (const dnnl::error&) {
    return;
  }
  p.backward_usable = true;
}

// `user` (the caller's buffer, in its plain layout) as a memory in layout `want`: the buffer itself when the
// layouts agree, else a copy reordered into the work buffer of `slot`.
memory as_layout(dnnl::stream& stream, const memory::desc& user_desc, const float* user, const memory::desc& want,
                 Slot slot) {
  memory user_memory(user_desc, cpu_engine(), const_cast<float*>(user));
  if (want == user_desc) return user_memory;
  memory copy(want, cpu_engine(), g_workspace.get(slot, want.get_size()));
  dnnl::reorder(user_memory, copy).execute(stream, user_memory, copy);
  return copy;
}

// The channel block of `blocked` when it is the layout oneDNN's JIT convolutions give activations [B, C, T]
// (nCw16c with AVX-512, nCw8c with AVX2: [B, C/block, T, block], padded channels at the end), else 0.
int channel_block(const memory::desc& blocked) {
  const memory::dims dims = blocked.dims();
  if (dims.size() != 3) return 0;  // grouped weights
  if (blocked == memory::desc(dims, kF32, Tag::nCw16c)) return 16;
  if (blocked == memory::desc(dims, kF32, Tag::nCw8c)) return 8;
  return 0;
}

// plain [B, C, T] += blocked [B, ceil(C/block), T, block]. oneDNN's reorder with a sum post-op does the same
// at a third of the speed (a generic kernel where the plain copy has a blocked one).
void add_from_blocked(const float* blocked, float* plain, int64_t B, int64_t C, int64_t T, int block) {
  const int64_t blocks = (C + block - 1) / block;
  constexpr int64_t kColumns = 256;  // a tile of [kColumns, block] floats stays in L1 while its rows are added
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < B; ++n)
    for (int64_t cb = 0; cb < blocks; ++cb) {
      const float* src = blocked + (n * blocks + cb) * T * block;
      const int64_t channels = std::min<int64_t>(block, C - cb * block);
      for (int64_t t0 = 0; t0 < T; t0 += kColumns) {
        const int64_t t1 = std::min(T, t0 + kColumns);
        for (int64_t c = 0; c < channels; ++c) {
          float* dst = plain + (n * C + cb * block + c) * T;
          for (int64_t t = t0; t < t1; ++t) dst[t] += src[t * block + c];
        }
      }
    }
}

// to += from, `to` in the caller's plain layout: our loop for blocked activations, else a reorder with a sum
// post-op.
void add_into(dnnl::stream& stream, memory from, const memory::desc& to_desc, float* to) {
  const memory::desc from_desc = from.get_desc();
  if (const int block = channel_block(from_desc)) {
    stream.wait();  // the convolution that wrote `from`
    const memory::dims d = to_desc.dims();
    add_from_blocked(static_cast<const float*>(from.get_data_handle()), to, d[0], d[1], d[2], block);
    return;
  }
  memory to_memory(to_desc, cpu_engine(), to);
  dnnl::post_ops ops;
  ops.append_sum(1.0f);
  dnnl::primitive_attr attr;
  attr.set_post_ops(ops);
  const dnnl::reorder::primitive_desc pd(from, to_memory, attr);
  dnnl::reorder(pd).execute(stream, from, to_memory);
}

}  // namespace

bool onednn_conv1d_forward(const Conv1dGeometry& g, const float* x, const float* w, const float* b, float* y) {
  if (g.B == 0) return false;  // nothing to compute; oneDNN's descriptors want a batch
  std::lock_guard<std::mutex> lock(g_mutex);
  Conv1dPrimitives& p = primitives_for(g);
  if (!p.usable) return false;
  try {
    dnnl::stream stream(cpu_engine());
    memory src = as_layout(stream, p.x, x, p.forward_pd.src_desc(), kActivations0);
    memory weights = as_layout(stream, p.w, w, p.forward_pd.weights_desc(), kWeights);
    // No bias: a zero one (oneDNN's descriptor was made with one; the few bytes are cheaper than a second one).
    std::vector<float> zero_bias;
    if (!b) zero_bias.assign(static_cast<size_t>(g.Cout), 0.0f);
    memory bias(p.forward_pd.bias_desc(), cpu_engine(), const_cast<float*>(b ? b : zero_bias.data()));
    const bool direct = p.forward_pd.dst_desc() == p.y;
    memory dst = direct ? memory(p.y, cpu_engine(), y)
                        : memory(p.forward_pd.dst_desc(), cpu_engine(),
                                 g_workspace.get(kActivations1, p.forward_pd.dst_desc().get_size()));
    p.forward.execute(stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_BIAS, bias},
                               {DNNL_ARG_DST, dst}});
    if (!direct) {
      memory out(p.y, cpu_engine(), y);
      dnnl::reorder(dst, out).execute(stream, dst, out);
    }
    stream.wait();
  } catch (const dnnl::error& e) {
    VC_FAIL("conv1d (oneDNN) forward at " << describe(g) << ": " << e.what());
  }
  ++g_runs;
  return true;
}

bool onednn_conv1d_backward(const Conv1dGeometry& g, const float* x, const float* w, const float* dy, float* dx,
                            float* dw) {
  if (g.B == 0) return false;
  std::lock_guard<std::mutex> lock(g_mutex);
  Conv1dPrimitives& p = primitives_for(g);
  if (!p.usable) return false;
  if (!p.backward_made) make_backward(g, p);
  if (!p.backward_usable) return false;
  try {
    dnnl::stream stream(cpu_engine());
    if (dx) {
      const auto& pd = p.backward_data_pd;
      memory diff_dst = as_layout(stream, p.y, dy, pd.diff_dst_desc(), kActivations0);
      memory weights = as_layout(stream, p.w, w, pd.weights_desc(), kWeights);
      memory diff_src(pd.diff_src_desc(), cpu_engine(), g_workspace.get(kActivations1, pd.diff_src_desc().get_size()));
      p.backward_data.execute(stream, {{DNNL_ARG_DIFF_DST, diff_dst}, {DNNL_ARG_WEIGHTS, weights},
                                       {DNNL_ARG_DIFF_SRC, diff_src}});
      add_into(stream, diff_src, p.x, dx);
    }
    if (dw) {
      const auto& pd = p.backward_weights_pd;
      // dy in the weight gradient's layout: usually the one the data gradient just made.
      const bool reuse = dx && pd.diff_dst_desc() == p.backward_data_pd.diff_dst_desc() && pd.diff_dst_desc() != p.y;
      memory diff_dst = reuse ? memory(pd.diff_dst_desc(), cpu_engine(),
                                       g_workspace.get(kActivations0, pd.diff_dst_desc().get_size()))
                              : as_layout(stream, p.y, dy, pd.diff_dst_desc(), dx ? kActivations2 : kActivations0);
      // dx has been added into the caller's buffer: its slot is free for x.
      memory src = as_layout(stream, p.x, x, pd.src_desc(), kActivations1);
      memory diff_weights(pd.diff_weights_desc(), cpu_engine(),
                          g_workspace.get(kWeightsGrad, pd.diff_weights_desc().get_size()));
      p.backward_weights.execute(stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_DST, diff_dst},
                                          {DNNL_ARG_DIFF_WEIGHTS, diff_weights}});
      add_into(stream, diff_weights, p.w, dw);
    }
    stream.wait();
  } catch (const dnnl::error& e) {
    VC_FAIL("conv1d (oneDNN) backward at " << describe(g) << ": " << e.what());
  }
  ++g_runs;
  return true;
}

int64_t onednn_conv1d_runs() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_runs;
}

}  // namespace vitscuda::kernels::detail
