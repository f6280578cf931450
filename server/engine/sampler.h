// Token sampling: greedy, temperature, top-k and top-p, from a per-request
// random stream, so a request's output depends only on its seed and logits
// (never on what else is in the batch).
//
// Thread safety: a Sampler is owned by one request and used by one thread.
#ifndef TESSERA_SERVER_ENGINE_SAMPLER_H_
#define TESSERA_SERVER_ENGINE_SAMPLER_H_

#include <cstdint>
#include <vector>

namespace tessera {

struct SamplingConfig {
  float temperature = 0.0f;  // 0: greedy
  int32_t top_k = 0;         // 0: all tokens
  float top_p = 1.0f;        // (0, 1]
  uint64_t seed = 0;
};

// xoshiro256** seeded through splitmix64: the same sequence on every platform.
class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t Next();
  double Uniform();  // [0, 1) with 53 random bits

 private:
  uint64_t s_[4];
};

class Sampler {
 public:
  explicit Sampler(const SamplingConfig& config);

  // logits [vocab]; returns the chosen token id. Greedy ties pick the lowest id.
  int32_t Sample(const float* logits, int32_t vocab);

 private:
  SamplingConfig config_;
  Rng rng_;
  std::vector<int32_t> candidates_;
  std::vector<double> probs_;
};

int32_t ArgMax(const float* logits, int32_t vocab);

}  // namespace tessera

#endif  // TESSERA_SERVER_ENGINE_SAMPLER_H_
