#include "adapters/watermark.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "common/exception_guard.h"
#include "common/json_util.h"
#include "common/status_macros.h"
#include "model/safetensors.h"

namespace tessera {
namespace {

// Inverts the n×n matrix m in place (Gauss-Jordan, partial pivoting). False
// when it is singular or too ill-conditioned to invert in double precision.
bool Invert(std::vector<double>& m, int n) {
  std::vector<double> inv(static_cast<size_t>(n) * n, 0.0);
  for (int i = 0; i < n; ++i) inv[i * n + i] = 1;
  double max_abs = 0;
  for (double v : m) max_abs = std::max(max_abs, std::fabs(v));
  if (max_abs == 0) return false;
  for (int c = 0; c < n; ++c) {
    int pivot = c;
    for (int r = c + 1; r < n; ++r) {
      if (std::fabs(m[r * n + c]) > std::fabs(m[pivot * n + c])) pivot = r;
    }
    if (std::fabs(m[pivot * n + c]) < 1e-12 * max_abs) return false;
    for (int k = 0; k < n; ++k) {
      std::swap(m[c * n + k], m[pivot * n + k]);
      std::swap(inv[c * n + k], inv[pivot * n + k]);
    }
    const double d = m[c * n + c];
    for (int k = 0; k < n; ++k) {
      m[c * n + k] /= d;
      inv[c * n + k] /= d;
    }
    for (int r = 0; r < n; ++r) {
      if (r == c || m[r * n + c] == 0) continue;
      const double f = m[r * n + c];
      for (int k = 0; k < n; ++k) {
        m[r * n + k] -= f * m[c * n + k];
        inv[r * n + k] -= f * inv[c * n + k];
      }
    }
  }
  m = std::move(inv);
  return true;
}

// C[m, n] = A[m, k] · B[k, n], row-major, doubles.
std::vector<double> MatMul(const std::vector<double>& a, const std::vector<double>& b, int64_t m, int64_t k,
                           int64_t n) {
  std::vector<double> c(static_cast<size_t>(m * n), 0.0);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t p = 0; p < k; ++p) {
      const double av = a[i * k + p];
      if (av == 0) continue;
      for (int64_t j = 0; j < n; ++j) c[i * n + j] += av * b[p * n + j];
    }
  }
  return c;
}

std::vector<double> Transpose(const std::vector<double>& a, int64_t rows, int64_t cols) {
  std::vector<double> t(a.size());
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) t[j * rows + i] = a[i * cols + j];
  }
  return t;
}

// Lower Cholesky factor of the SPD n×n matrix m (empty if not SPD).
std::vector<double> Cholesky(const std::vector<double>& m, int n) {
  std::vector<double> l(static_cast<size_t>(n) * n, 0.0);
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j <= i; ++j) {
      double s = 0.5 * (m[i * n + j] + m[j * n + i]);
      for (int k = 0; k < j; ++k) s -= l[i * n + k] * l[j * n + k];
      if (i == j) {
        if (s <= 0) return {};
        l[i * n + i] = std::sqrt(s);
      } else {
        l[i * n + j] = s / l[j * n + j];
      }
    }
  }
  return l;
}

std::vector<double> ToDouble(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

double Pearson(const std::vector<double>& x, const std::vector<double>& y) {
  const double n = static_cast<double>(x.size());
  double mx = 0, my = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    mx += x[i];
    my += y[i];
  }
  mx /= n;
  my /= n;
  double sxy = 0, sxx = 0, syy = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) * (x[i] - mx);
    syy += (y[i] - my) * (y[i] - my);
  }
  if (sxx == 0 || syy == 0) return 0;
  return sxy / std::sqrt(sxx * syy);
}

// Ĉ for one credential module, or nothing when the suspect does not adapt it.
std::optional<std::vector<double>> RecoverPassport(const Adapter& suspect, const WatermarkModule& cm,
                                                   int32_t r) {
  if (cm.layer >= suspect.num_layers) return std::nullopt;
  const AdapterModule& m = suspect.module(cm.layer, cm.module);
  if (m.lora) {
    const int64_t rs = m.lora->rank;
    // (B⁺·B_s) [r, rs] · (A_s·A⁺) [rs, r]: ΔW / s without forming ΔW.
    const std::vector<double> left = MatMul(cm.b_pinv, ToDouble(m.lora->b), r, cm.out, rs);
    const std::vector<double> right = MatMul(ToDouble(m.lora->a), cm.a_pinv, rs, cm.in, r);
    std::vector<double> c = MatMul(left, right, r, rs, r);
    return c;
  }
  if (m.diablo) {
    // Explicit block-diagonal ΔW [out, in] (DiaBlo has no scale).
    const DiabloModule& d = *m.diablo;
    std::vector<double> dw(static_cast<size_t>(cm.out) * cm.in, 0.0);
    for (int32_t i = 0; i < d.blocks; ++i) {
      for (int32_t j = 0; j < d.d1; ++j) {
        const int64_t col = static_cast<int64_t>(i) * d.d1 + j;
        if (col >= cm.in) continue;
        for (int32_t o = 0; o < d.d2; ++o) {
          const int64_t row = static_cast<int64_t>(i) * d.d2 + o;
          if (row >= cm.out) continue;
          dw[row * cm.in + col] = d.block[(static_cast<size_t>(i) * d.d1 + j) * d.d2 + o];
        }
      }
    }
    const std::vector<double> left = MatMul(cm.b_pinv, dw, r, cm.out, cm.in);
    return MatMul(left, cm.a_pinv, r, cm.in, r);
  }
  return std::nullopt;
}

// Per-module Ĉ = B⁺·(ΔW / s)·A⁺, nullopt where the suspect adapts nothing.
std::vector<std::optional<std::vector<double>>> RecoverAll(const Adapter& suspect,
                                                           const WatermarkCredentials& c) {
  std::vector<std::optional<std::vector<double>>> out;
  for (const WatermarkModule& cm : c.modules) out.push_back(RecoverPassport(suspect, cm, c.rank));
  return out;
}

double MeanPearson(const std::vector<std::optional<std::vector<double>>>& hats,
                   const std::vector<double>& passport) {
  double sum = 0;
  for (const auto& h : hats) {
    if (h) sum += Pearson(*h, passport);
  }
  return hats.empty() ? 0 : sum / static_cast<double>(hats.size());
}

absl::Status CheckFinite(const TensorView& t, const std::string& name, std::vector<float>* out) {
  *out = t.ToFloat();
  for (float v : *out) {
    if (!std::isfinite(v)) {
      return absl::InvalidArgumentError(absl::StrCat("credential tensor ", name, " contains NaN or Inf"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

namespace {
absl::StatusOr<WatermarkCredentials> CredentialsFrom(const SafetensorsFile& passport_file,
                                                     const SafetensorsFile& raw_factors_file, const ModelConfig& base,
                                                     bool compute_null) {
  const std::string& passport_path = passport_file.path();
  const std::string& raw_factors_path = raw_factors_file.path();
  const SafetensorsFile* pf = &passport_file;
  const TensorView* c = pf->Find("C");
  if (c == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        passport_path, ": no tensor 'C' (the r x r passport, as in owner_secret/passport.safetensors)"));
  }
  if (c->shape.size() != 2 || c->shape[0] != c->shape[1] || c->shape[0] < 1 ||
      c->shape[0] > kMaxWatermarkRank) {
    return absl::InvalidArgumentError(absl::StrCat(passport_path, ": passport C must be square [r, r] with r <= ",
                                                   kMaxWatermarkRank, ", got ", ShapeString(c->shape)));
  }
  WatermarkCredentials cred;
  cred.rank = static_cast<int32_t>(c->shape[0]);
  const int32_t r = cred.rank;
  std::vector<float> cf;
  TESSERA_RETURN_IF_ERROR(CheckFinite(*c, "C", &cf));
  cred.passport = ToDouble(cf);
  std::vector<double> check = cred.passport;
  if (!Invert(check, r)) {
    return absl::InvalidArgumentError(absl::StrCat(passport_path,
                                                   ": passport C is singular; a SEAL passport is an "
                                                   "invertible r x r matrix"));
  }

  const SafetensorsFile* rf = &raw_factors_file;
  std::map<std::pair<int32_t, int>, std::pair<const TensorView*, const TensorView*>> factors;  // A, B
  for (const auto& [name, view] : rf->tensors()) {
    // [PREFIX.]model.layers.N.<module>.lora_{A,B}.weight
    std::optional<LinearModulePath> path;
    bool is_a = false;
    std::string_view key = name;
    if (key.ends_with(".lora_A.weight") || key.ends_with(".lora_B.weight")) {
      is_a = key[key.size() - 8] == 'A';
      key.remove_suffix(std::string_view(".lora_A.weight").size());
      const size_t at = key.rfind("model.layers.");
      if (at != std::string_view::npos && (at == 0 || key[at - 1] == '.')) {
        path = ParseLinearModulePath(key.substr(at), std::numeric_limits<int32_t>::max());
      }
    }
    if (!path) {
      return absl::InvalidArgumentError(
          absl::StrCat(raw_factors_path, ": unexpected tensor '", Excerpt(name),
                       "'; raw factors use peft key names (...layers.N.self_attn.q_proj.lora_A.weight)"));
    }
    const int32_t layer = path->layer;
    if (layer >= base.num_hidden_layers) {
      return absl::InvalidArgumentError(absl::StrCat(raw_factors_path, ": tensor '", Excerpt(name),
                                                     "' names layer ", layer, " but the base model has ",
                                                     base.num_hidden_layers));
    }
    const int module = static_cast<int>(path->module);
    auto& slot = factors[{layer, module}];
    const TensorView*& dest = is_a ? slot.first : slot.second;
    if (dest != nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(raw_factors_path, ": tensor '", Excerpt(name),
                                                     "' repeats a factor already given for that module"));
    }
    dest = &view;
  }
  if (factors.empty()) return absl::InvalidArgumentError(absl::StrCat(raw_factors_path, ": no raw factors"));
  for (const auto& [key, ab] : factors) {
    const auto [layer, module] = key;
    const std::string where = absl::StrCat(raw_factors_path, ": layer ", layer, " ",
                                           LinearModuleName(static_cast<LinearModule>(module)));
    if (ab.first == nullptr || ab.second == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": needs both lora_A and lora_B"));
    }
    const auto [out, in] = BaseLinearShape(base, static_cast<LinearModule>(module));
    const std::vector<int64_t> want_a = {r, in}, want_b = {out, r};
    if (ab.first->shape != want_a || ab.second->shape != want_b) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": lora_A ", ShapeString(ab.first->shape), " and lora_B ", ShapeString(ab.second->shape),
          " must be ", ShapeString(want_a), " and ", ShapeString(want_b), " (rank ", r,
          " from the passport, base shape [", out, ", ", in, "])"));
    }
    std::vector<float> af, bf;
    TESSERA_RETURN_IF_ERROR(CheckFinite(*ab.first, where + " lora_A", &af));
    TESSERA_RETURN_IF_ERROR(CheckFinite(*ab.second, where + " lora_B", &bf));
    const std::vector<double> a = ToDouble(af), b = ToDouble(bf);
    // B⁺ = (BᵀB)⁻¹Bᵀ [r, out]; A⁺ = Aᵀ(AAᵀ)⁻¹ [in, r].
    const std::vector<double> bt = Transpose(b, out, r);
    std::vector<double> btb = MatMul(bt, b, r, out, r);
    const std::vector<double> at = Transpose(a, r, in);
    std::vector<double> aat = MatMul(a, at, r, in, r);
    if (!Invert(btb, r) || !Invert(aat, r)) {
      return absl::InvalidArgumentError(absl::StrCat(
          where,
          ": the raw factors are rank-deficient (singular), so the passport cannot be recovered; send the "
          "original full-rank B and A"));
    }
    WatermarkModule wm;
    wm.layer = layer;
    wm.module = static_cast<LinearModule>(module);
    wm.out = static_cast<int32_t>(out);
    wm.in = static_cast<int32_t>(in);
    wm.b_pinv = MatMul(btb, bt, r, r, out);
    wm.a_pinv = MatMul(at, aat, in, r, r);
    wm.chol_b = Cholesky(btb, r);
    wm.chol_a = Cholesky(aat, r);
    if (wm.chol_b.empty() || wm.chol_a.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": the raw factors are numerically singular"));
    }
    cred.modules.push_back(std::move(wm));
  }
  if (!compute_null) return cred;
  const std::vector<double> null = WatermarkNullScores(cred, 1000, VerifyOptions().seed);
  for (double s : null) cred.null_mean += s / static_cast<double>(null.size());
  for (double s : null) {
    cred.null_std += (s - cred.null_mean) * (s - cred.null_mean) / static_cast<double>(null.size() - 1);
  }
  cred.null_std = std::sqrt(cred.null_std);
  return cred;
}
}  // namespace

absl::StatusOr<WatermarkCredentials> LoadWatermarkCredentials(const std::string& passport_path,
                                                              const std::string& raw_factors_path,
                                                              const ModelConfig& base) {
  return GuardExceptions("watermark credentials", [&]() -> absl::StatusOr<WatermarkCredentials> {
    TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> pf, SafetensorsFile::Open(passport_path));
    TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> rf, SafetensorsFile::Open(raw_factors_path));
    return CredentialsFrom(*pf, *rf, base, /*compute_null=*/true);
  });
}

absl::StatusOr<WatermarkCredentials> ParseWatermarkCredentials(std::string passport, std::string raw_factors,
                                                               const ModelConfig& base, bool compute_null) {
  return GuardExceptions("watermark credentials", [&]() -> absl::StatusOr<WatermarkCredentials> {
    TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> pf,
                             SafetensorsFile::FromBytes(std::move(passport), "passport"));
    TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> rf,
                             SafetensorsFile::FromBytes(std::move(raw_factors), "raw factors"));
    return CredentialsFrom(*pf, *rf, base, compute_null);
  });
}

double WatermarkCredentials::FalsePositiveRate(double threshold) const {
  if (null_std <= 0) return 1;
  return 0.5 * std::erfc((threshold - null_mean) / (null_std * std::sqrt(2.0)));
}

bool WatermarkShapesMatch(const Adapter& suspect, const WatermarkCredentials& credentials) {
  for (const WatermarkModule& cm : credentials.modules) {
    if (cm.layer >= suspect.num_layers) continue;
    const AdapterModule& m = suspect.module(cm.layer, cm.module);
    if (m.lora && static_cast<int64_t>(m.lora->b.size()) == static_cast<int64_t>(cm.out) * m.lora->rank &&
        static_cast<int64_t>(m.lora->a.size()) == static_cast<int64_t>(cm.in) * m.lora->rank) {
      return true;
    }
  }
  return false;
}

double WatermarkScore(const Adapter& suspect, const WatermarkCredentials& credentials) {
  return MeanPearson(RecoverAll(suspect, credentials), credentials.passport);
}

std::vector<double> WatermarkNullScores(const WatermarkCredentials& credentials, int64_t trials,
                                        uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  const int32_t r = credentials.rank;
  const std::vector<double>& c = credentials.passport;
  std::vector<double> random_passport(c.size()), zb(c.size()), za(c.size());
  std::vector<std::optional<std::vector<double>>> hats(credentials.modules.size());
  std::vector<std::vector<double>> chol_a_t;
  for (const WatermarkModule& cm : credentials.modules) chol_a_t.push_back(Transpose(cm.chol_a, r, r));
  std::vector<double> scores;
  scores.reserve(static_cast<size_t>(std::max<int64_t>(trials, 0)));
  for (int64_t t = 0; t < trials; ++t) {
    for (size_t i = 0; i < credentials.modules.size(); ++i) {
      for (double& x : zb) x = normal(rng);
      for (double& x : za) x = normal(rng);
      // (B⁺·G_b)(G_a·A⁺) has the law of (chol_b·Z_b)(Z_a·chol_aᵀ).
      const std::vector<double> left = MatMul(credentials.modules[i].chol_b, zb, r, r, r);
      const std::vector<double> right = MatMul(za, chol_a_t[i], r, r, r);
      hats[i] = MatMul(left, right, r, r, r);
    }
    const std::vector<double>* passport = &c;
    if (t % 2 == 1) {
      for (double& x : random_passport) x = normal(rng);
      passport = &random_passport;
    }
    scores.push_back(MeanPearson(hats, *passport));
  }
  return scores;
}

WatermarkVerdict VerifyWatermark(const Adapter& suspect, const WatermarkCredentials& credentials,
                                 const VerifyOptions& options) {
  WatermarkVerdict v;
  v.threshold = options.threshold;
  const auto hats = RecoverAll(suspect, credentials);
  const std::vector<double>& c = credentials.passport;
  double peak = 0;
  for (double x : c) peak = std::max(peak, x * x);
  bool any = false;
  for (size_t i = 0; i < hats.size(); ++i) {
    WatermarkLayerStat s;
    s.layer = credentials.modules[i].layer;
    s.module = credentials.modules[i].module;
    if (hats[i]) {
      any = true;
      s.adapted = true;
      const std::vector<double>& h = *hats[i];
      s.pearson = Pearson(h, c);
      double same = 0, mse = 0;
      for (size_t k = 0; k < c.size(); ++k) {
        same += (h[k] >= 0) == (c[k] >= 0) ? 1 : 0;
        mse += (h[k] - c[k]) * (h[k] - c[k]);
      }
      s.sign_agreement = same / static_cast<double>(c.size());
      mse /= static_cast<double>(c.size());
      s.psnr_db = mse > 0 ? 10 * std::log10(peak / mse) : 300;
    }
    v.layers.push_back(s);
  }
  if (!any) {
    v.note =
        suspect.kind == AdapterKind::kRoad
            ? "a RoAd adapter rotates outputs and has no additive low-rank update to carry a SEAL passport"
            : "the adapter changes none of the modules the credentials cover";
  }
  v.score = MeanPearson(hats, c);

  const std::vector<double> null = WatermarkNullScores(credentials, options.null_trials, options.seed);
  double sum = 0, sum2 = 0;
  for (size_t t = 0; t < null.size(); ++t) {
    sum += null[t];
    sum2 += null[t] * null[t];
    v.null_max = t == 0 ? null[t] : std::max(v.null_max, null[t]);
  }
  v.null_trials = options.null_trials;
  if (options.null_trials > 1) {
    v.null_mean = sum / options.null_trials;
    v.null_std =
        std::sqrt(std::max(0.0, (sum2 - sum * sum / options.null_trials) / (options.null_trials - 1)));
  }
  // A suspect that adapts nothing has a degenerate (all-zero) null: its FPR
  // stays 1 and it is never owned.
  if (any && v.null_std > 0) {
    v.false_positive_rate =
        0.5 * std::erfc((options.threshold - v.null_mean) / (v.null_std * std::sqrt(2.0)));
  }
  v.owned = any && v.score >= options.threshold && v.false_positive_rate <= options.max_false_positive_rate;
  return v;
}

}  // namespace tessera
