// Kernel tests of the embedding (kernels/embedding.h): the gather and its id checks, the backward
// (a scatter-add where repeated ids add up) against central differences and a serial scatter.
#include <gtest/gtest.h>

#include "common/error.h"
#include "kernel_checks.h"
#include "kernels/embedding.h"

namespace vitscuda::kernels {
namespace {

using namespace checks;

// ------------------------------------------------------------------ embedding

TEST(EmbeddingKernel, GathersRowsAndRejectsOutOfRangeIds) {
  const int64_t vocab = 6, C = 4;
  const Vec table = random_vector(vocab * C, 121);
  const std::vector<int32_t> ids = {3, 0, 5, 3, 1};
  Vec y(ids.size() * C);
  embedding_forward_cpu<double>(table.data(), ids.data(), y.data(), static_cast<int64_t>(ids.size()), vocab, C);
  for (size_t i = 0; i < ids.size(); ++i)
    for (int64_t c = 0; c < C; ++c) EXPECT_EQ(y[i * C + c], table[ids[i] * C + c]);

  const std::vector<int32_t> bad = {1, 2, 6};
  try {
    embedding_forward_cpu<double>(table.data(), bad.data(), y.data(), 3, vocab, C);
    FAIL() << "id 6 of a 6-row table was accepted";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("id 6"), std::string::npos) << msg;
    EXPECT_NE(msg.find("position 2"), std::string::npos) << msg;
  }
  const std::vector<int32_t> negative = {-1};
  EXPECT_THROW(embedding_forward_cpu<double>(table.data(), negative.data(), y.data(), 1, vocab, C), Error);
}


TEST(EmbeddingKernel, BackwardMatchesFiniteDifferences) {
  const int64_t vocab = 6, C = 4;
  Vec table = random_vector(vocab * C, 131);
  const std::vector<int32_t> ids = {3, 0, 5, 3, 1, 3, 0};  // repeats must add up; row 2 and 4 unused
  const int64_t n = static_cast<int64_t>(ids.size());
  const Vec r = random_vector(n * C, 132);
  auto loss = [&] {
    Vec y(n * C);
    embedding_forward_cpu<double>(table.data(), ids.data(), y.data(), n, vocab, C);
    return dot(y, r);
  };
  AccumulatedGrad dt(table.size(), 133);
  embedding_backward_cpu<double>(r.data(), ids.data(), dt.data(), n, vocab, C);
  EXPECT_LT(relative_max_error(dt.added(), numeric_gradient(&table, loss)), kGradTolerance);
  for (int64_t c = 0; c < C; ++c) {
    EXPECT_EQ(dt.added()[2 * C + c], 0.0);
    EXPECT_EQ(dt.added()[4 * C + c], 0.0);
  }
}

TEST(EmbeddingKernel, BackwardLargeTableMatchesSerialScatter) {
  // Enough work for the channel-split parallel path.
  const int64_t vocab = 50, C = 300, n = 400;
  std::vector<int32_t> ids(n);
  for (int64_t i = 0; i < n; ++i) ids[i] = static_cast<int32_t>((i * 7) % vocab);
  const Vec dy = random_vector(n * C, 141);
  Vec dt(vocab * C, 0.0), ref(vocab * C, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < C; ++c) ref[ids[i] * C + c] += dy[i * C + c];
  embedding_backward_cpu<double>(dy.data(), ids.data(), dt.data(), n, vocab, C);
  EXPECT_EQ(dt, ref);  // same additions in the same order per element
}

}  // namespace
}  // namespace vitscuda::kernels
