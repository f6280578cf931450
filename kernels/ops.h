// OpTable: the ops a backend provides, one function pointer each. The Llama
// forward pass (server/engine/engine.cc) is written once against this table;
// CpuOps() and CudaOps() fill it with the same Args structs, the way
// VectorIsa picks AVX2 or portable code. Every op takes
// (const FooArgs&, const ExecContext&) and allocates nothing.
//
// Thread safety: the tables are immutable; ops may run on one thread per
// ExecContext at a time.
#ifndef TESSERA_KERNELS_OPS_H_
#define TESSERA_KERNELS_OPS_H_

#include "absl/status/status.h"
#include "kernels/attention.h"
#include "kernels/diablo_apply.h"
#include "kernels/embedding.h"
#include "kernels/exec.h"
#include "kernels/kv_cache_write.h"
#include "kernels/linear.h"
#include "kernels/lora_apply.h"
#include "kernels/residual_add.h"
#include "kernels/rms_norm.h"
#include "kernels/road_apply.h"
#include "kernels/rope.h"
#include "kernels/swiglu.h"

namespace tessera {

struct OpTable {
  const char* name = "";  // "cpu", "cuda"
  Device device = Device::kCpu;
  absl::Status (*embedding)(const EmbeddingArgs&, const ExecContext&) = nullptr;
  absl::Status (*rms_norm)(const RmsNormArgs&, const ExecContext&) = nullptr;
  absl::Status (*linear)(const LinearArgs&, const ExecContext&) = nullptr;
  absl::Status (*rope)(const RopeArgs&, const ExecContext&) = nullptr;
  absl::Status (*kv_write)(const KvCacheWriteArgs&, const ExecContext&) = nullptr;
  absl::Status (*attention)(const AttentionArgs&, const ExecContext&) = nullptr;
  absl::Status (*swiglu)(const SwiGluArgs&, const ExecContext&) = nullptr;
  absl::Status (*residual_add)(const ResidualAddArgs&, const ExecContext&) = nullptr;
  absl::Status (*lora_apply)(const LoraApplyArgs&, const ExecContext&) = nullptr;
  absl::Status (*diablo_apply)(const DiabloApplyArgs&, const ExecContext&) = nullptr;
  absl::Status (*road_apply)(const RoadApplyArgs&, const ExecContext&) = nullptr;
  // Scratch each op needs in ExecContext::workspace; null means none.
  size_t (*attention_workspace_bytes)(const AttentionArgs&) = nullptr;
};

// The CPU backend (kernels/cpu/).
const OpTable& CpuOps();
// The CUDA backend, or nullptr when this binary was built without CUDA (the
// CUDA kernels are still to come, so for now it is always nullptr).
const OpTable* CudaOps();

}  // namespace tessera

#endif  // TESSERA_KERNELS_OPS_H_
