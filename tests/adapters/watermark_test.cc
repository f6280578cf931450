// SEAL ownership verification against the fixture's SEAL adapter and its
// owner secret (HF/peft-produced), the other fixture adapters, random
// adapters, and attacks on the released factors.
#include "adapters/watermark.h"

#include <sys/stat.h>

#include <cmath>
#include <cstring>
#include <random>

#include "adapters/watermark_vault.h"
#include "gtest/gtest.h"
#include "model/model_config.h"
#include "model/safetensors.h"
#include "tests/support/fixtures.h"

namespace tessera {
namespace {

std::string Dir(const std::string& rel) { return testing::TinyLlamaDir() + "/" + rel; }

class WatermarkTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    base_ = new ModelConfig(*ModelConfig::FromFile(testing::TinyLlamaModelDir() + "/config.json"));
    auto cred = LoadWatermarkCredentials(Dir("owner_secret/passport.safetensors"),
                                         Dir("owner_secret/original_lora.safetensors"), *base_);
    ASSERT_TRUE(cred.ok()) << cred.status();
    cred_ = new WatermarkCredentials(*std::move(cred));
  }
  static void TearDownTestSuite() {
    delete cred_;
    delete base_;
  }
  static Adapter Load(const std::string& kind) {
    auto a = LoadAdapter(kind, Dir("adapters/" + kind), *base_, AdapterLimits{});
    EXPECT_TRUE(a.ok()) << a.status();
    return **a;
  }
  // Applies f to every LoRA module of a copy of the SEAL fixture.
  template <typename F>
  static Adapter Attacked(F f) {
    Adapter a = Load("seal");
    for (AdapterModule& m : a.modules) {
      if (m.lora) f(*m.lora);
    }
    return a;
  }

  static ModelConfig* base_;
  static WatermarkCredentials* cred_;
};
ModelConfig* WatermarkTest::base_ = nullptr;
WatermarkCredentials* WatermarkTest::cred_ = nullptr;

double Norm(const std::vector<float>& v) {
  double s = 0;
  for (float x : v) s += double{x} * x;
  return std::sqrt(s);
}

TEST_F(WatermarkTest, TheSealFixtureVerifiesAsOwned) {
  EXPECT_EQ(cred_->rank, 8);
  EXPECT_EQ(cred_->modules.size(), 14u);  // 2 layers x 7 modules
  WatermarkVerdict v = VerifyWatermark(Load("seal"), *cred_);
  EXPECT_TRUE(v.owned);
  EXPECT_GT(v.score, 0.99);
  EXPECT_LE(v.false_positive_rate, 1e-6);
  ASSERT_EQ(v.layers.size(), 14u);
  for (const WatermarkLayerStat& s : v.layers) {
    EXPECT_GT(s.pearson, 0.99) << s.layer << " " << LinearModuleName(s.module);
    EXPECT_EQ(s.sign_agreement, 1.0);
    EXPECT_GT(s.psnr_db, 40);
  }
}

TEST_F(WatermarkTest, OtherFixtureAdaptersAreNotOwned) {
  for (const char* kind : {"lora", "lora2", "diablo", "road"}) {
    WatermarkVerdict v = VerifyWatermark(Load(kind), *cred_);
    EXPECT_FALSE(v.owned) << kind;
    EXPECT_LT(v.score, 0.5) << kind;
  }
  EXPECT_FALSE(VerifyWatermark(Load("road"), *cred_).note.empty());
}

TEST_F(WatermarkTest, ThousandRandomAdaptersAreNotOwnedAndTheNullFitsTheFpr) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0, 0.05f);
  Adapter a = Load("seal");
  std::vector<double> scores;
  for (int t = 0; t < 1000; ++t) {
    for (AdapterModule& m : a.modules) {
      if (!m.lora) continue;
      for (float& x : m.lora->a) x = normal(rng);
      for (float& x : m.lora->b) x = normal(rng);
    }
    scores.push_back(WatermarkScore(a, *cred_));
  }
  double mean = 0, var = 0, max = -1;
  for (double s : scores) mean += s / scores.size();
  for (double s : scores) {
    var += (s - mean) * (s - mean) / (scores.size() - 1);
    max = std::max(max, s);
  }
  const double sd = std::sqrt(var);
  const double fpr = 0.5 * std::erfc((0.5 - mean) / (sd * std::sqrt(2.0)));
  std::printf("random adapters: mean %.4f sd %.4f max %.4f; fitted FPR at 0.5 = %.3g\n", mean, sd, max, fpr);
  EXPECT_LT(max, 0.5);
  EXPECT_NEAR(mean, 0, 0.02);
  EXPECT_LE(fpr, 1e-6);
  // A full verification of a random adapter is not owned either.
  EXPECT_FALSE(VerifyWatermark(a, *cred_).owned);
}

TEST_F(WatermarkTest, VerificationSurvivesAttacksOnTheReleasedFactors) {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal;
  // Gaussian noise at 10% of each factor's norm.
  Adapter noisy = Attacked([&](LoraModule& m) {
    for (std::vector<float>* f : {&m.a, &m.b}) {
      std::vector<float> n(f->size());
      for (float& x : n) x = normal(rng);
      const double k = 0.1 * Norm(*f) / Norm(n);
      for (size_t i = 0; i < f->size(); ++i) (*f)[i] += static_cast<float>(k * n[i]);
    }
  });
  // Pruning of the 20% smallest-magnitude weights of each factor.
  Adapter pruned = Attacked([&](LoraModule& m) {
    for (std::vector<float>* f : {&m.a, &m.b}) {
      std::vector<float> mags;
      for (float x : *f) mags.push_back(std::fabs(x));
      std::nth_element(mags.begin(), mags.begin() + mags.size() / 5, mags.end());
      const float cut = mags[mags.size() / 5];
      for (float& x : *f) {
        if (std::fabs(x) < cut) x = 0;
      }
    }
  });
  // Re-factorisation B'' = B'·M, A'' = M⁻¹·A' (ΔW unchanged): M diagonal-
  // dominant random, inverted exactly by solving with Gauss-Jordan.
  Adapter refactored = Attacked([&](LoraModule& m) {
    const int r = m.rank;
    std::vector<double> mm(r * r), inv(r * r, 0);
    for (int i = 0; i < r; ++i) {
      for (int j = 0; j < r; ++j) mm[i * r + j] = normal(rng) + (i == j ? 4.0 : 0.0);
      inv[i * r + i] = 1;
    }
    std::vector<double> work = mm;
    for (int c = 0; c < r; ++c) {
      const double d = work[c * r + c];
      for (int k = 0; k < r; ++k) {
        work[c * r + k] /= d;
        inv[c * r + k] /= d;
      }
      for (int rr = 0; rr < r; ++rr) {
        if (rr == c) continue;
        const double f = work[rr * r + c];
        for (int k = 0; k < r; ++k) {
          work[rr * r + k] -= f * work[c * r + k];
          inv[rr * r + k] -= f * inv[c * r + k];
        }
      }
    }
    const int64_t out = static_cast<int64_t>(m.b.size()) / r, in = static_cast<int64_t>(m.a.size()) / r;
    std::vector<float> b(m.b.size()), a(m.a.size());
    for (int64_t o = 0; o < out; ++o) {
      for (int j = 0; j < r; ++j) {
        double s = 0;
        for (int k = 0; k < r; ++k) s += m.b[o * r + k] * mm[k * r + j];
        b[o * r + j] = static_cast<float>(s);
      }
    }
    for (int i = 0; i < r; ++i) {
      for (int64_t c = 0; c < in; ++c) {
        double s = 0;
        for (int k = 0; k < r; ++k) s += inv[i * r + k] * m.a[k * in + c];
        a[i * in + c] = static_cast<float>(s);
      }
    }
    m.a = std::move(a);
    m.b = std::move(b);
  });
  // Continued fine-tuning: a random rank-2 update of 10% of ΔW's norm
  // (scale-adjusted), appended as two extra LoRA components.
  Adapter finetuned = Attacked([&](LoraModule& m) {
    const int r = m.rank, extra = 2;
    const int64_t out = static_cast<int64_t>(m.b.size()) / r, in = static_cast<int64_t>(m.a.size()) / r;
    std::vector<float> u(out * extra), w(extra * in);
    for (float& x : u) x = normal(rng);
    for (float& x : w) x = normal(rng);
    const double k = std::sqrt(0.1 * Norm(m.b) * Norm(m.a) / (Norm(u) * Norm(w)));
    std::vector<float> b(out * (r + extra)), a((r + extra) * in);
    for (int64_t o = 0; o < out; ++o) {
      for (int j = 0; j < r; ++j) b[o * (r + extra) + j] = m.b[o * r + j];
      for (int j = 0; j < extra; ++j) b[o * (r + extra) + r + j] = static_cast<float>(k * u[o * extra + j]);
    }
    std::copy(m.a.begin(), m.a.end(), a.begin());
    for (int64_t i = 0; i < extra * in; ++i) a[r * in + i] = static_cast<float>(k * w[i]);
    m.a = std::move(a);
    m.b = std::move(b);
    m.rank = r + extra;
  });
  for (const auto& [what, adapter] :
       std::vector<std::pair<std::string, const Adapter*>>{{"noise 10%", &noisy},
                                                           {"pruned 20%", &pruned},
                                                           {"re-factorised", &refactored},
                                                           {"fine-tuned", &finetuned}}) {
    WatermarkVerdict v = VerifyWatermark(*adapter, *cred_);
    std::printf("%-14s score %.4f  FPR %.3g\n", what.c_str(), v.score, v.false_positive_rate);
    EXPECT_TRUE(v.owned) << what << ": score " << v.score << ", FPR " << v.false_positive_rate;
  }
  EXPECT_GT(VerifyWatermark(refactored, *cred_).score, 0.99);  // ΔW is unchanged
}

TEST_F(WatermarkTest, MalformedCredentialsGetClearErrors) {
  testing::TempDir dir;
  auto write = [&](const std::string& name, std::vector<TensorToWrite> t) {
    EXPECT_TRUE(WriteSafetensors(dir.Join(name), t).ok());
    return dir.Join(name);
  };
  // fill plus a full-rank pattern, or exactly fill (rank 1) when !varied.
  auto tensor = [](const std::string& name, std::vector<int64_t> shape, float fill, bool varied = true) {
    TensorToWrite t;
    t.name = name;
    t.shape = shape;
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<float> v(n, fill);
    for (int64_t i = 0; varied && i < n; ++i) v[i] += static_cast<float>((i * 37 % 11) - 5) * 0.1f;
    t.data.resize(n * sizeof(float));
    std::memcpy(t.data.data(), v.data(), t.data.size());
    return t;
  };
  const std::string raw = Dir("owner_secret/original_lora.safetensors");
  const std::string pass = Dir("owner_secret/passport.safetensors");
  struct Case {
    std::string passport, raw, message;
  };
  const std::string q = "base_model.model.model.layers.0.self_attn.q_proj.";
  TensorToWrite identity = tensor("C", {8, 8}, 0);
  {
    std::vector<float> eye(64, 0);
    for (int i = 0; i < 8; ++i) eye[i * 9] = 1;
    std::memcpy(identity.data.data(), eye.data(), 256);
  }
  const std::string good_passport = write("eye.safetensors", {identity});
  std::vector<Case> cases = {
      {write("p1.safetensors", {tensor("C", {8, 4}, 0)}), raw, "must be square"},
      {write("p2.safetensors", {tensor("X", {8, 8}, 0)}), raw, "no tensor 'C'"},
      {write("p3.safetensors", {tensor("C", {8, 8}, 1, false)}), raw, "singular"},
      {write("p4.safetensors", {tensor("C", {8, 8}, NAN)}), raw, "NaN"},
      {pass,
       write("r1.safetensors",
             {tensor(q + "lora_A.weight", {8, 63}, 0), tensor(q + "lora_B.weight", {64, 8}, 0)}),
       "must be [8, 64] and [64, 8]"},
      {pass,
       write("r2.safetensors", {tensor(q + "lora_A.weight", {8, 64}, 1, false),
                                tensor(q + "lora_B.weight", {64, 8}, 1, false)}),
       "rank-deficient"},
      {pass, write("r3.safetensors", {tensor(q + "lora_A.weight", {8, 64}, 0)}),
       "needs both lora_A and lora_B"},
      {pass, write("r4.safetensors", {tensor("weird", {8, 64}, 0)}), "unexpected tensor 'weird'"},
      {good_passport,
       write("r5.safetensors",
             {tensor(q + "lora_A.weight", {8, 64}, NAN), tensor(q + "lora_B.weight", {64, 8}, 0)}),
       "NaN"},
  };
  for (const Case& c : cases) {
    auto cred = LoadWatermarkCredentials(c.passport, c.raw, *base_);
    EXPECT_EQ(cred.status().code(), absl::StatusCode::kInvalidArgument) << c.message << ": " << cred.status();
    EXPECT_NE(cred.status().message().find(c.message), std::string::npos) << cred.status();
  }
}

TEST_F(WatermarkTest, VaultStoresPrivatelyReloadsAndRefusesWeakCredentials) {
  testing::TempDir dir;
  const std::string passport = testing::ReadFileOrDie(Dir("owner_secret/passport.safetensors"));
  const std::string raw = testing::ReadFileOrDie(Dir("owner_secret/original_lora.safetensors"));
  {
    auto vault = WatermarkVault::Open(dir.Join("vault"), *base_);
    ASSERT_TRUE(vault.ok()) << vault.status();
    auto e = (*vault)->Register("acme", "k1", passport, raw);
    ASSERT_TRUE(e.ok()) << e.status();
    EXPECT_EQ(e->credentials->modules.size(), 14u);
    EXPECT_EQ((*vault)->Register("acme", "k1", passport, raw).status().code(),
              absl::StatusCode::kAlreadyExists);
    struct stat st;
    ASSERT_EQ(::stat(dir.Join("vault/acme/k1/raw_factors.safetensors").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);

    // Rank 2 on one module: an unrelated adapter would pass 0.5 far too often.
    std::mt19937 rng(3);
    std::normal_distribution<float> normal;
    auto random_tensor = [&](const std::string& name, std::vector<int64_t> shape) {
      TensorToWrite t;
      t.name = name;
      t.shape = shape;
      std::vector<float> v(shape[0] * shape[1]);
      for (float& x : v) x = normal(rng);
      t.data.resize(v.size() * sizeof(float));
      std::memcpy(t.data.data(), v.data(), t.data.size());
      return t;
    };
    const std::string q = "base_model.model.model.layers.0.self_attn.q_proj.";
    ASSERT_TRUE(WriteSafetensors(dir.Join("p.safetensors"), {random_tensor("C", {2, 2})}).ok());
    ASSERT_TRUE(WriteSafetensors(dir.Join("r.safetensors"), {random_tensor(q + "lora_A.weight", {2, 64}),
                                                             random_tensor(q + "lora_B.weight", {64, 2})})
                    .ok());
    auto weak = (*vault)->Register("acme", "weak", testing::ReadFileOrDie(dir.Join("p.safetensors")),
                                   testing::ReadFileOrDie(dir.Join("r.safetensors")));
    EXPECT_EQ(weak.status().code(), absl::StatusCode::kInvalidArgument) << weak.status();
    EXPECT_NE(weak.status().message().find("cannot prove ownership"), std::string::npos) << weak.status();
  }
  auto reopened = WatermarkVault::Open(dir.Join("vault"), *base_);
  ASSERT_TRUE(reopened.ok());
  ASSERT_EQ((*reopened)->All().size(), 1u);
  EXPECT_TRUE(VerifyWatermark(Load("seal"), *(*reopened)->Find("acme", "k1")->credentials).owned);
  EXPECT_EQ((*reopened)->Find("acme", "weak").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace tessera
