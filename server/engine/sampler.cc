#include "server/engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace tessera {
namespace {

uint64_t SplitMix64(uint64_t* x) {
  uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

}  // namespace

Rng::Rng(uint64_t seed) {
  for (uint64_t& s : s_) s = SplitMix64(&seed);
}

uint64_t Rng::Next() {
  const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = Rotl(s_[3], 45);
  return result;
}

double Rng::Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

int32_t ArgMax(const float* logits, int32_t vocab) {
  int32_t best = 0;
  for (int32_t i = 1; i < vocab; ++i) {
    if (logits[i] > logits[best]) best = i;
  }
  return best;
}

Sampler::Sampler(const SamplingConfig& config) : config_(config), rng_(config.seed) {}

int32_t Sampler::Sample(const float* logits, int32_t vocab) {
  if (config_.temperature <= 0.0f || config_.top_k == 1) return ArgMax(logits, vocab);

  candidates_.resize(vocab);
  std::iota(candidates_.begin(), candidates_.end(), 0);
  // Order by logit, ties by id, so the result is independent of sort stability.
  auto better = [logits](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  size_t n = candidates_.size();
  if (config_.top_k > 0 && static_cast<size_t>(config_.top_k) < n) {
    n = config_.top_k;
    std::partial_sort(candidates_.begin(), candidates_.begin() + n, candidates_.end(), better);
  } else {
    std::sort(candidates_.begin(), candidates_.end(), better);
  }
  candidates_.resize(n);

  const double inv_t = 1.0 / config_.temperature;
  const double max_logit = logits[candidates_[0]];
  probs_.resize(n);
  double total = 0;
  for (size_t i = 0; i < n; ++i) {
    probs_[i] = std::exp((logits[candidates_[i]] - max_logit) * inv_t);
    total += probs_[i];
  }
  // Nucleus: the smallest prefix whose mass reaches top_p (at least one token).
  if (config_.top_p < 1.0f) {
    const double target = config_.top_p * total;
    double cum = 0;
    size_t keep = 0;
    while (keep < n) {
      cum += probs_[keep++];
      if (cum >= target) break;
    }
    n = keep;
    total = cum;
  }
  double u = rng_.Uniform() * total;
  for (size_t i = 0; i < n; ++i) {
    u -= probs_[i];
    if (u < 0) return candidates_[i];
  }
  return candidates_[n - 1];
}

}  // namespace tessera
