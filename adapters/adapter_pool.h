// AdapterPool: the adapter slots that the engine's ops read, allocated once
// (--adapter-slots, --max-lora-rank). It is the resident tier of the adapter
// cache: a slot holds one adapter's weights from the end of its load until it
// is evicted, and a plan's adapter segments name slots.
//
// Layout: for every (layer, module) one region of [slots, stride] fp32
// values, stride = AdapterSlotFloats(in, out, max_lora_rank) (adapter.h).
// Inside its slot an adapter is stored compactly:
//   LoRA / SEAL: A [rank, in], then B [out, rank]
//   DiaBlo:      blocks [n, d1, d2] (n·d1·d2 <= stride, checked at load)
//   RoAd:        c [out], then s [out]
// Beside the regions, per (layer, module) one weight table per op family
// ([slots] LoraSlotWeights, DiabloSlotWeights, RoadSlotWeights) points into
// them: that is what the ops take. An untargeted module, or a slot of
// another family, has a null entry, so its rows are left alone.
//
// Thread safety: Write and Clear of slot s may run on any thread while the
// ops read other slots. The caller (AdapterCache) guarantees that no step
// names a slot while it is written or cleared, and publishes a written slot
// to the scheduler through its own mutex.
#ifndef TESSERA_ADAPTERS_ADAPTER_POOL_H_
#define TESSERA_ADAPTERS_ADAPTER_POOL_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "adapters/adapter.h"
#include "common/device_buffer.h"
#include "kernels/diablo_apply.h"
#include "kernels/lora_apply.h"
#include "kernels/plan_view.h"
#include "kernels/road_apply.h"
#include "model/linear_modules.h"
#include "model/model_config.h"

namespace tessera {

struct AdapterPoolOptions {
  int32_t slots = 0;           // >= 1
  int32_t max_lora_rank = 64;  // Rmax, in [1, kMaxLoraRank]
};

class AdapterPool {
 public:
  // InvalidArgument for bad options; ResourceExhausted when the memory is
  // not there (the message gives the size and the flags that set it).
  static absl::StatusOr<std::unique_ptr<AdapterPool>> Create(const ModelConfig& config,
                                                             const AdapterPoolOptions& options,
                                                             Allocator& allocator = HostAllocator());
  // Bytes of one slot (all layers and modules) for this model and rank.
  static int64_t SlotBytes(const ModelConfig& config, int32_t max_lora_rank);

  // Copies `adapter` into `slot` (0 <= slot < num_slots()), replacing what
  // was there. InvalidArgument when it was loaded for another model shape or
  // does not fit (rank over max_lora_rank, DiaBlo blocks over the stride);
  // the slot is then empty.
  absl::Status Write(int32_t slot, const Adapter& adapter);
  // The same from an opened adapter, straight from its file into the slot
  // (dtype converted and finiteness checked in the same pass), split over up
  // to `threads` threads by module. Also InvalidArgument at a NaN or Inf;
  // the slot is then empty.
  absl::Status WriteFrom(int32_t slot, const AdapterSource& source, int threads = 1);
  // Empties `slot`: every table entry null, op_of nullopt.
  void Clear(int32_t slot);

  // The op family of the adapter in `slot`; nullopt when empty or out of range.
  std::optional<AdapterOp> op_of(int32_t slot) const;
  // By slot, for PlanBuilder::Build; an empty slot reads kLowRank, so a plan
  // must be checked against op_of too (Engine::Step does).
  absl::Span<const AdapterOp> slot_ops() const { return slot_ops_; }

  // [num_slots()] weight tables of one layer and module.
  const LoraSlotWeights* lora(int32_t layer, LinearModule m) const { return &lora_[Table(layer, m)]; }
  const DiabloSlotWeights* diablo(int32_t layer, LinearModule m) const { return &diablo_[Table(layer, m)]; }
  const RoadSlotWeights* road(int32_t layer, LinearModule m) const { return &road_[Table(layer, m)]; }

  // True when `config` has this pool's layer count and linear shapes.
  bool MadeFor(const ModelConfig& config) const;

  int32_t num_slots() const { return slots_; }
  int32_t max_lora_rank() const { return max_rank_; }
  int64_t slot_bytes() const { return slot_floats_ * static_cast<int64_t>(sizeof(float)); }
  int64_t bytes() const { return static_cast<int64_t>(memory_.bytes()); }

 private:
  AdapterPool(const ModelConfig& config, const AdapterPoolOptions& options);
  size_t Table(int32_t layer, LinearModule m) const {
    return (static_cast<size_t>(layer) * kNumLinearModules + static_cast<int>(m)) * slots_;
  }
  float* Region(int32_t slot, int32_t layer, LinearModule m) const;
  absl::Status WriteModule(int32_t slot, int32_t layer, LinearModule m, const AdapterModule& module);
  absl::Status WriteModuleFrom(int32_t slot, const std::string& name, const AdapterModuleSource& module);
  // Checks slot and layer count before a write; clears the slot.
  absl::Status BeginWrite(int32_t slot, const Adapter& adapter);

  const ModelConfig config_;
  const int32_t slots_;
  const int32_t max_rank_;
  int64_t slot_floats_ = 0;
  std::vector<int64_t> region_offset_;  // [layers * modules], in floats from memory_
  std::vector<int64_t> stride_;         // [modules]
  DeviceBuffer memory_;
  std::vector<AdapterOp> slot_ops_;     // [slots]
  std::vector<uint8_t> occupied_;       // [slots] (bytes: written from several threads)
  std::vector<LoraSlotWeights> lora_;   // [layers * modules * slots]
  std::vector<DiabloSlotWeights> diablo_;
  std::vector<RoadSlotWeights> road_;
};

}  // namespace tessera

#endif  // TESSERA_ADAPTERS_ADAPTER_POOL_H_
