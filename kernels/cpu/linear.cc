#include "kernels/linear.h"

#include "absl/strings/str_format.h"
#include "kernels/cpu/thread_pool.h"

namespace tessera {
namespace {

// Eight independent partial sums: lets the compiler vectorize without
// reassociating, so results are reproducible for a given build.
inline float Dot(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  }
  float tail = 0;
  for (; i < n; ++i) tail += a[i] * b[i];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail;
}

}  // namespace

absl::Status LinearCpu(const LinearArgs& a, ThreadPool& pool) {
  if (a.rows < 0 || a.in <= 0 || a.out <= 0 || !a.x || !a.weight || !a.y) {
    return absl::InvalidArgumentError(
        absl::StrFormat("Linear: bad arguments rows=%d in=%d out=%d", a.rows, a.in, a.out));
  }
  if (a.rows == 0) return absl::OkStatus();
  // Split over output channels so each weight row is read once per call and
  // reused across all rows of x while it is in cache.
  const int64_t min_chunk = std::max<int64_t>(1, 4096 / a.in);
  pool.ParallelFor(a.out, min_chunk, [&](int64_t o_begin, int64_t o_end) {
    constexpr int64_t kBlock = 16;
    for (int64_t ob = o_begin; ob < o_end; ob += kBlock) {
      const int64_t oe = std::min(o_end, ob + kBlock);
      for (int64_t r = 0; r < a.rows; ++r) {
        const float* xr = a.x + r * a.in;
        float* yr = a.y + r * a.out;
        for (int64_t o = ob; o < oe; ++o) {
          float v = Dot(xr, a.weight + o * a.in, a.in);
          if (a.bias) v += a.bias[o];
          yr[o] = v;
        }
      }
    }
  });
  return absl::OkStatus();
}

}  // namespace tessera
