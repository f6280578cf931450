#include "kernels/embedding.h"

#include <cstring>

#include "absl/strings/str_format.h"
#include "kernels/cpu/require_f32.h"

namespace tessera {

absl::Status EmbeddingCpu(const EmbeddingArgs& a, const ExecContext&) {
  if (absl::Status s = RequireF32("Embedding", a.dtype); !s.ok()) return s;
  const float* table = static_cast<const float*>(a.table);
  float* out = static_cast<float*>(a.out);
  for (int64_t r = 0; r < a.rows; ++r) {
    const int32_t id = a.token_ids[r];
    if (id < 0 || id >= a.vocab) {
      return absl::InternalError(
          absl::StrFormat("Embedding: token id %d outside the vocabulary [0, %d)", id, a.vocab));
    }
    std::memcpy(out + r * a.dim, table + static_cast<int64_t>(id) * a.dim, a.dim * sizeof(float));
  }
  return absl::OkStatus();
}

}  // namespace tessera
