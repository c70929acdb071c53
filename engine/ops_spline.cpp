// The rational-quadratic spline of the stochastic duration predictor (kernels/spline.h), forward +
// tape-recorded backward of both of its outputs.
#include <utility>

#include "common/error.h"
#include "engine/autograd.h"
#include "engine/dispatch.h"
#include "engine/op_support.h"
#include "engine/ops.h"
#include "kernels/spline.h"

namespace vitscuda::ops {

std::pair<Tensor, Tensor> rational_quadratic_spline(const Tensor& inputs, const Tensor& widths, const Tensor& heights,
                                                    const Tensor& derivatives, bool reverse, double tail_bound) {
  const char* op = "rational_quadratic_spline";
  check_operands(op, {{"inputs", &inputs}, {"widths", &widths}, {"heights", &heights}, {"derivatives", &derivatives}});
  const int64_t n = inputs.numel();
  VC_CHECK(widths.ndim() == 2 && widths.dim(0) == n && heights.shape() == widths.shape() &&
               derivatives.ndim() == 2 && derivatives.dim(0) == n && derivatives.dim(1) == widths.dim(1) - 1,
           op << ": expected inputs [N], widths/heights [N, bins], derivatives [N, bins-1]; got " << inputs.describe()
              << ", " << widths.describe() << ", " << heights.describe() << ", " << derivatives.describe());
  const int bins = static_cast<int>(widths.dim(1));
  Tensor out = Tensor::empty(inputs.shape(), inputs.dtype(), inputs.device());
  Tensor logdet = Tensor::empty(inputs.shape(), inputs.dtype(), inputs.device());
  VC_KERNEL(op, inputs, rational_quadratic_spline_forward, inputs.data<T>(), widths.data<T>(), heights.data<T>(),
            derivatives.data<T>(), out.data<T>(), logdet.data<T>(), n, bins, reverse, tail_bound);
  if (autograd::needs_grad({&inputs, &widths, &heights, &derivatives})) {
    SlotPtr sx = slot_of(inputs), sw = slot_of(widths), sh = slot_of(heights), sd = slot_of(derivatives);
    const Tensor xs = inputs.detach(), ws = widths.detach(), hs = heights.detach(), ds = derivatives.detach();
    // Two outputs, two tape nodes: each passes back its own output's gradient (the kernel
    // recomputes the bin from the saved inputs, which is cheap next to saving it).
    for (const bool of_logdet : {false, true}) {
      Tensor& result = of_logdet ? logdet : out;
      autograd::record(of_logdet ? "rational_quadratic_spline(log_abs_det)" : op, result, [=](const Tensor& grad) {
        Tensor dx = grad_buffer(sx, xs.shape()), dw = grad_buffer(sw, ws.shape());
        Tensor dh = grad_buffer(sh, hs.shape()), dd = grad_buffer(sd, ds.shape());
        VC_KERNEL("rational_quadratic_spline_backward", grad, rational_quadratic_spline_backward, xs.data<T>(),
                  ws.data<T>(), hs.data<T>(), ds.data<T>(), of_logdet ? nullptr : grad.data<T>(),
                  of_logdet ? grad.data<T>() : nullptr, data_or_null<T>(dx), data_or_null<T>(dw),
                  data_or_null<T>(dh), data_or_null<T>(dd), n, bins, reverse, tail_bound);
      });
    }
  }
  return {out, logdet};
}

}  // namespace vitscuda::ops
