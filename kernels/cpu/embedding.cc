#include "kernels/embedding.h"

#include <cstring>

#include "absl/strings/str_format.h"

namespace tessera {

absl::Status EmbeddingCpu(const EmbeddingArgs& a) {
  for (int64_t r = 0; r < a.rows; ++r) {
    const int32_t id = a.token_ids[r];
    if (id < 0 || id >= a.vocab) {
      return absl::InternalError(
          absl::StrFormat("Embedding: token id %d outside the vocabulary [0, %d)", id, a.vocab));
    }
    std::memcpy(a.out + r * a.dim, a.table + static_cast<int64_t>(id) * a.dim, a.dim * sizeof(float));
  }
  return absl::OkStatus();
}

}  // namespace tessera
