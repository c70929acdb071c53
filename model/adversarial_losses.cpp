#include "model/adversarial_losses.h"

#include <string>

#include "common/error.h"
#include "engine/ops.h"

namespace vitscuda::model {

namespace {

// mean over every element, as a scalar (shape []).
Tensor mean_all(const Tensor& x) {
  VC_CHECK(x.numel() > 0, "adversarial loss: mean of an empty tensor " << x.describe());
  return ops::scale(ops::sum(x.reshape({x.numel()}), 0, false), 1.0 / static_cast<double>(x.numel()));
}

// mean((x - target)^2)
Tensor mean_squared_distance(const Tensor& x, double target) {
  const Tensor d = target == 0.0 ? x : ops::add_scalar(x, -target);
  return mean_all(ops::mul(d, d));
}

Tensor sum_terms(const std::vector<Tensor>& terms) {
  VC_CHECK(!terms.empty(), "adversarial loss: no sub-discriminator scores");
  Tensor total = terms[0];
  for (size_t i = 1; i < terms.size(); ++i) total = ops::add(total, terms[i]);
  return total;
}

// mean(|sg(real) - fake|) through masked_l1_loss with an all-valid mask: its sum / (C * frames * B) is the mean
// over every element once the map is viewed as [B, C', F].
Tensor mean_absolute_distance(const Tensor& real, const Tensor& fake) {
  VC_CHECK(real.shape() == fake.shape(), "feature matching: real feature map " << real.describe()
                                                                               << " does not match generated "
                                                                               << fake.describe());
  VC_CHECK(fake.ndim() >= 3, "feature matching: feature maps must be [B, C, ...], got " << fake.describe());
  const int64_t B = fake.dim(0), C = fake.dim(1), F = fake.numel() / (B * C);
  const Tensor mask = Tensor::full({B, F}, 1.0, fake.dtype(), fake.device());
  return ops::masked_l1_loss(fake.reshape({B, C, F}), real.detach().reshape({B, C, F}), mask);
}

}  // namespace

AdversarialLoss discriminator_loss(const std::vector<Tensor>& real_scores, const std::vector<Tensor>& fake_scores) {
  VC_CHECK(real_scores.size() == fake_scores.size(),
           "discriminator_loss: " << real_scores.size() << " real and " << fake_scores.size()
                                  << " generated sub-discriminator scores");
  AdversarialLoss out;
  std::vector<Tensor> per_k;
  for (size_t k = 0; k < real_scores.size(); ++k) {
    out.terms.push_back(mean_squared_distance(real_scores[k], 1.0));
    out.terms.push_back(mean_squared_distance(fake_scores[k], 0.0));
    per_k.push_back(ops::add(out.terms[2 * k], out.terms[2 * k + 1]));
  }
  out.loss = sum_terms(per_k);
  return out;
}

AdversarialLoss generator_adversarial_loss(const std::vector<Tensor>& fake_scores) {
  AdversarialLoss out;
  for (const Tensor& s : fake_scores) out.terms.push_back(mean_squared_distance(s, 1.0));
  out.loss = sum_terms(out.terms);
  return out;
}

AdversarialLoss feature_matching_loss(const std::vector<std::vector<Tensor>>& real_feature_maps,
                                      const std::vector<std::vector<Tensor>>& fake_feature_maps) {
  VC_CHECK(real_feature_maps.size() == fake_feature_maps.size(),
           "feature_matching_loss: " << real_feature_maps.size() << " real and " << fake_feature_maps.size()
                                     << " generated sub-discriminators");
  AdversarialLoss out;
  for (size_t k = 0; k < fake_feature_maps.size(); ++k) {
    VC_CHECK(real_feature_maps[k].size() == fake_feature_maps[k].size() && !fake_feature_maps[k].empty(),
             "feature_matching_loss: sub-discriminator " << k << " has " << real_feature_maps[k].size()
                                                         << " real and " << fake_feature_maps[k].size()
                                                         << " generated feature maps");
    std::vector<Tensor> maps;
    for (size_t l = 0; l < fake_feature_maps[k].size(); ++l)
      maps.push_back(mean_absolute_distance(real_feature_maps[k][l], fake_feature_maps[k][l]));
    out.terms.push_back(ops::scale(sum_terms(maps), 2.0));
  }
  out.loss = sum_terms(out.terms);
  return out;
}

std::vector<double> mean_scores(const std::vector<Tensor>& scores) {
  std::vector<double> out;
  for (const Tensor& s : scores) {
    double total = 0;
    for (float v : s.to(Device::CPU).to_float_vector()) total += v;
    out.push_back(s.numel() ? total / static_cast<double>(s.numel()) : 0.0);
  }
  return out;
}

}  // namespace vitscuda::model
