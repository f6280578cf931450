// SEAL ownership verification (DESIGN.md, "SEAL").
//
// A SEAL adapter is trained as ΔW = s·B·C·A with a secret r×r passport C and
// released as a plain LoRA B'·A' (C hidden by an SVD split). Its owner keeps
// C and the raw factors B [out, r], A [r, in] of every module. For any
// suspect adapter the owner recovers, per module,
//
//   Ĉ = B⁺ · ΔW_suspect · A⁺ / s_suspect
//
// which is ≈ C for the genuine adapter (also after re-factorisation, noise,
// pruning or further fine-tuning of the released factors) and noise for an
// unrelated one. For a LoRA-form suspect (ΔW = s·B_s·A_s) this is computed as
// (B⁺·B_s)·(A_s·A⁺) without forming ΔW; a DiaBlo suspect's ΔW is formed
// explicitly; a RoAd suspect has no additive ΔW to compare and is not owned.
//
// Per module: the Pearson correlation of Ĉ with C, the fraction of entries
// with the same sign, and the PSNR of Ĉ against C. The score is the mean
// Pearson correlation over the credential's modules (a module the suspect does
// not adapt counts 0). The false-positive rate is measured for each
// verification from `null_trials` null scores: random Gaussian adapters of
// the credential's shapes (rank r), scored against the true passport (even
// trials) and against random Gaussian passports (odd trials). A normal
// distribution is fitted to the null scores; its upper tail at the
// threshold is the FPR. "owned" needs score >= threshold and
// FPR <= max_false_positive_rate.
//
// Thread safety: pure functions; credentials are immutable once loaded.
#ifndef TESSERA_ADAPTERS_WATERMARK_H_
#define TESSERA_ADAPTERS_WATERMARK_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "adapters/adapter.h"
#include "model/model_config.h"

namespace tessera {

struct WatermarkModule {
  int32_t layer = 0;
  LinearModule module = LinearModule::kQ;
  int32_t out = 0, in = 0;
  std::vector<double> b_pinv;  // [r, out]: (BᵀB)⁻¹Bᵀ
  std::vector<double> a_pinv;  // [in, r]: Aᵀ(AAᵀ)⁻¹
  // Lower Cholesky factors of (BᵀB)⁻¹ and (AAᵀ)⁻¹ [r, r]: for Gaussian random
  // factors G, B⁺·G has the law of chol_b·Z, so null trials cost r³ each.
  std::vector<double> chol_b, chol_a;
};

struct WatermarkCredentials {
  int32_t rank = 0;
  std::vector<double> passport;          // C [rank, rank]
  std::vector<WatermarkModule> modules;  // sorted by (layer, module)
  // Null score distribution of these credentials (1,000 trials at load), for
  // screening uploads without a per-upload null.
  double null_mean = 0, null_std = 0;

  // The fitted normal's upper tail at threshold.
  double FalsePositiveRate(double threshold) const;
};

// Largest passport rank accepted: every null trial costs r^3 per module.
inline constexpr int64_t kMaxWatermarkRank = 128;

// Reads the passport (tensor "C" [r, r]) and the raw factors (peft key names:
// ...layers.N.<module>.lora_A.weight [r, in] and lora_B.weight [out, r]) and
// checks them against the base model. InvalidArgument naming the tensor for:
// a missing or extra tensor, wrong shapes, NaN/Inf, a singular passport or
// rank-deficient factors (no pseudo-inverse), a rank over kMaxWatermarkRank.
// Never throws.
absl::StatusOr<WatermarkCredentials> LoadWatermarkCredentials(const std::string& passport_path,
                                                              const std::string& raw_factors_path,
                                                              const ModelConfig& base);
// The same from the two files' bytes, in memory (errors say "passport" and
// "raw factors"). compute_null=false skips the null distribution (its fields
// stay 0): for callers that only validate.
absl::StatusOr<WatermarkCredentials> ParseWatermarkCredentials(std::string passport, std::string raw_factors,
                                                               const ModelConfig& base, bool compute_null = true);

struct WatermarkLayerStat {
  int32_t layer = 0;
  LinearModule module = LinearModule::kQ;
  double pearson = 0;
  double sign_agreement = 0;
  double psnr_db = 0;
  bool adapted = false;  // the suspect changes this module
};

struct VerifyOptions {
  double threshold = 0.5;
  double max_false_positive_rate = 1e-6;
  int32_t null_trials = 1000;
  uint64_t seed = 0x5ea1;  // of the random passports
};

struct WatermarkVerdict {
  bool owned = false;
  double score = 0;
  double threshold = 0;
  double false_positive_rate = 1;
  double null_mean = 0, null_std = 0;
  int32_t null_trials = 0;
  double null_max = 0;  // largest null score seen
  std::vector<WatermarkLayerStat> layers;
  std::string note;  // why a suspect could not be compared, if so
};

// Scores `suspect` against the credentials (see the file comment).
WatermarkVerdict VerifyWatermark(const Adapter& suspect, const WatermarkCredentials& credentials,
                                 const VerifyOptions& options = {});

// Null scores: random Gaussian adapters of the credential's shapes (every
// module adapted, rank r) against the true passport (even trials) and against
// random Gaussian passports (odd trials). Deterministic in seed.
std::vector<double> WatermarkNullScores(const WatermarkCredentials& credentials, int64_t trials,
                                        uint64_t seed);

// The score alone (no null distribution): for screening uploads.
double WatermarkScore(const Adapter& suspect, const WatermarkCredentials& credentials);

// True when the suspect adapts at least one module of the credentials with
// matching base shapes (a screening candidate).
bool WatermarkShapesMatch(const Adapter& suspect, const WatermarkCredentials& credentials);

}  // namespace tessera

#endif  // TESSERA_ADAPTERS_WATERMARK_H_
