// Loud, specific errors: every failure throws vitscuda::Error with a message
// naming what was wrong and where. Used by every layer, kernels to programs.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace vitscuda {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace vitscuda

#define VC_FAIL(msg)                            \
  do {                                          \
    std::ostringstream vc_fail_os_;             \
    vc_fail_os_ << msg;                         \
    throw ::vitscuda::Error(vc_fail_os_.str()); \
  } while (0)

#define VC_CHECK(cond, msg) \
  do {                      \
    if (!(cond)) VC_FAIL(msg); \
  } while (0)
