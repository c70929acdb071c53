// The adversarial terms of finetune-hf-vits' objective (run_vits_finetuning.py: discriminator_loss,
// generator_loss, feature_loss; the same as original VITS' losses.py), built from engine ops so each is a
// scalar on the current tape. `scores` are a Discriminator's per-sub-discriminator outputs [B, n_k]
// (model/discriminator.h), `feature_maps` its per-sub-discriminator feature maps.
#pragma once
#include <vector>

#include "engine/tensor.h"

namespace vitscuda::model {

struct AdversarialLoss {
  Tensor loss;                // the scalar (shape []) on the tape
  std::vector<Tensor> terms;  // its per-sub-discriminator terms (scalars), for logs
};

// L_D = sum_k [ mean((1 - D_k(real))^2) + mean(D_k(fake)^2) ]. Pass the scores of sg(fake) for the
// discriminator step. terms: real and fake interleaved (real_0, fake_0, real_1, fake_1, ...).
AdversarialLoss discriminator_loss(const std::vector<Tensor>& real_scores, const std::vector<Tensor>& fake_scores);

// L_adv = sum_k mean((1 - D_k(fake))^2) (the generator's least-squares term). terms: one per k.
AdversarialLoss generator_adversarial_loss(const std::vector<Tensor>& fake_scores);

// L_fm = 2 * sum_k sum_l mean(|sg(fmap_real[k][l]) - fmap_fake[k][l]|): the real maps are detached here.
// |0| has gradient 0 (torch's sign). terms: one per k (each with its factor 2).
AdversarialLoss feature_matching_loss(const std::vector<std::vector<Tensor>>& real_feature_maps,
                                      const std::vector<std::vector<Tensor>>& fake_feature_maps);

// The mean of each score tensor, read to the host (one value per sub-discriminator, for logs).
std::vector<double> mean_scores(const std::vector<Tensor>& scores);

}  // namespace vitscuda::model
