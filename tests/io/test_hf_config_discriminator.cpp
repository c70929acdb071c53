// The discriminator fields of finetune-hf-vits' VitsConfig (utils/configuration_vits.py): defaults when
// absent, null scale channels, written back only when the source had them, and the group-count check.
#include <gtest/gtest.h>

#include "io/hf_config.h"
#include "support/test_support.h"

namespace vitscuda::io {
namespace {

using nlohmann::json;
using vitscuda::testing::error_of;

TEST(HfConfigDiscriminator, AbsentFieldsGiveFinetuneHfVitsDefaults) {
  const VitsConfig c = VitsConfig::from_json(json::object(), "config.json");
  EXPECT_EQ(c.discriminator_kernel_size, 5);
  EXPECT_EQ(c.discriminator_stride, 3);
  EXPECT_EQ(c.discriminator_periods, (std::vector<int>{2, 3, 5, 7, 11}));
  EXPECT_EQ(c.discriminator_period_channels, (std::vector<int>{1, 32, 128, 512, 1024}));
  EXPECT_EQ(c.discriminator_scale_channels, (std::vector<int>{1, 16, 64, 256, 1024}));
  EXPECT_DOUBLE_EQ(c.leaky_relu_slope, 0.1);
  EXPECT_FALSE(c.discriminator_fields_present);
  // A plain config stays plain: none of the fields is written back.
  EXPECT_FALSE(c.to_json().contains("discriminator_periods"));
  EXPECT_TRUE(c.to_json(true).contains("discriminator_periods"));
  // The anchor's groups: 1 (first conv), 4, 16, 64 (channel-changing), 256 (the last-channel conv).
  EXPECT_EQ(c.discriminator_scale_groups(0), 1);
  EXPECT_EQ(c.discriminator_scale_groups(1), 4);
  EXPECT_EQ(c.discriminator_scale_groups(4), 256);
}

TEST(HfConfigDiscriminator, ReadsTheFieldsAndNullScaleChannels) {
  json j = {{"discriminator_kernel_size", 3},
            {"discriminator_stride", 2},
            {"discriminator_periods", {2, 3}},
            {"discriminator_period_channels", {1, 4, 8}},
            {"discriminator_scale_channels", nullptr}};
  const VitsConfig c = VitsConfig::from_json(j, "config.json");
  EXPECT_EQ(c.discriminator_kernel_size, 3);
  EXPECT_EQ(c.discriminator_stride, 2);
  EXPECT_EQ(c.discriminator_periods, (std::vector<int>{2, 3}));
  EXPECT_EQ(c.discriminator_period_channels, (std::vector<int>{1, 4, 8}));
  EXPECT_TRUE(c.discriminator_scale_channels.empty());
  EXPECT_TRUE(c.discriminator_fields_present);
  const json back = c.to_json();
  EXPECT_TRUE(back["discriminator_scale_channels"].is_null());
  EXPECT_EQ(back["discriminator_periods"], json({2, 3}));
  EXPECT_EQ(VitsConfig::from_json(back, "back.json").to_json(), back);
}

TEST(HfConfigDiscriminator, RejectsChannelsTheGroupsDoNotDivide) {
  // [1, 4, 8, 16, 16]: conv 2 (8 -> 16) would have 16 groups.
  const std::string e = error_of(
      [] { VitsConfig::from_json({{"discriminator_scale_channels", {1, 4, 8, 16, 16}}}, "config.json"); });
  EXPECT_NE(e.find("config.json: field 'discriminator_scale_channels'"), std::string::npos) << e;
  EXPECT_NE(e.find("conv 2 (8 -> 16 channels) has 16 groups"), std::string::npos) << e;
  EXPECT_NE(error_of([] { VitsConfig::from_json({{"discriminator_period_channels", {2, 8}}}, "c.json"); })
                .find("must list >= 2 channel counts starting with 1"),
            std::string::npos);
  EXPECT_NE(error_of([] { VitsConfig::from_json({{"discriminator_periods", json::array()}}, "c.json"); })
                .find("'discriminator_periods' must not be empty"),
            std::string::npos);
  EXPECT_NE(error_of([] { VitsConfig::from_json({{"discriminator_stride", 0}}, "c.json"); })
                .find("'discriminator_stride' must be > 0"),
            std::string::npos);
  // The anchor's smallest valid lists of each length are accepted.
  EXPECT_NO_THROW(VitsConfig::from_json({{"discriminator_scale_channels", {1, 8, 32, 64}}}, "c.json"));
  EXPECT_NO_THROW(VitsConfig::from_json({{"discriminator_scale_channels", {1, 4}}}, "c.json"));
}

}  // namespace
}  // namespace vitscuda::io
