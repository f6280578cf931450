// Embedding lookup: out[r] = table[token_ids[r]].
//   table [vocab, dim], token_ids [rows], out [rows, dim].
// Ids are validated by the caller (request validation); out-of-range ids here
// are an internal error.
#ifndef TESSERA_KERNELS_EMBEDDING_H_
#define TESSERA_KERNELS_EMBEDDING_H_

#include <cstdint>

#include "absl/status/status.h"
#include "common/dtype.h"
#include "kernels/exec.h"

namespace tessera {

struct EmbeddingArgs {
  const void* table = nullptr;
  const int32_t* token_ids = nullptr;
  void* out = nullptr;
  DType dtype = DType::kF32;  // of table and out
  int64_t rows = 0;
  int64_t vocab = 0;
  int64_t dim = 0;
};

absl::Status EmbeddingCpu(const EmbeddingArgs& args, const ExecContext& ctx);

}  // namespace tessera

#endif  // TESSERA_KERNELS_EMBEDDING_H_
