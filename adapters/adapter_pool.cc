#include "adapters/adapter_pool.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <limits>
#include <system_error>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/mutex.h"
#include "common/status_macros.h"
#include "kernels/supported_shapes.h"

namespace tessera {
namespace {

// Each region starts on a 64-byte boundary.
int64_t PaddedStride(const ModelConfig& config, LinearModule m, int32_t max_lora_rank) {
  const auto [out, in] = BaseLinearShape(config, m);
  return (AdapterSlotFloats(in, out, max_lora_rank) + 15) / 16 * 16;
}

}  // namespace

int64_t AdapterPool::SlotBytes(const ModelConfig& config, int32_t max_lora_rank) {
  int64_t floats = 0;
  for (int m = 0; m < kNumLinearModules; ++m) {
    floats += PaddedStride(config, static_cast<LinearModule>(m), max_lora_rank);
  }
  return floats * config.num_hidden_layers * static_cast<int64_t>(sizeof(float));
}

AdapterPool::AdapterPool(const ModelConfig& config, const AdapterPoolOptions& options)
    : config_(config), slots_(options.slots), max_rank_(options.max_lora_rank) {}

absl::StatusOr<std::unique_ptr<AdapterPool>> AdapterPool::Create(const ModelConfig& config,
                                                                 const AdapterPoolOptions& options,
                                                                 Allocator& allocator) {
  if (options.slots < 1) {
    return absl::InvalidArgumentError(absl::StrCat("--adapter-slots must be >= 1, got ", options.slots));
  }
  if (options.max_lora_rank < 1 || options.max_lora_rank > kMaxLoraRank) {
    return absl::InvalidArgumentError(absl::StrCat("--max-lora-rank must be in [1, ", kMaxLoraRank, "], got ",
                                                   options.max_lora_rank));
  }
  std::unique_ptr<AdapterPool> pool(new AdapterPool(config, options));
  const int32_t layers = config.num_hidden_layers;
  pool->stride_.resize(kNumLinearModules);
  for (int m = 0; m < kNumLinearModules; ++m) {
    pool->stride_[m] = PaddedStride(config, static_cast<LinearModule>(m), options.max_lora_rank);
    pool->slot_floats_ += pool->stride_[m] * layers;
  }
  const int64_t slot_bytes = pool->slot_bytes();
  if (slot_bytes > std::numeric_limits<int64_t>::max() / 2 / options.slots) {
    return absl::InvalidArgumentError(absl::StrCat("an adapter pool of ", options.slots, " slots of ",
                                                   slot_bytes, " bytes is too large"));
  }
  pool->region_offset_.resize(static_cast<size_t>(layers) * kNumLinearModules);
  int64_t offset = 0;
  for (int32_t l = 0; l < layers; ++l) {
    for (int m = 0; m < kNumLinearModules; ++m) {
      pool->region_offset_[static_cast<size_t>(l) * kNumLinearModules + m] = offset;
      offset += pool->stride_[m] * options.slots;
    }
  }
  absl::StatusOr<DeviceBuffer> memory =
      DeviceBuffer::Allocate(allocator, static_cast<size_t>(offset) * sizeof(float));
  if (!memory.ok()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "cannot allocate the adapter pool: ", options.slots, " slots of ", slot_bytes >> 20, " MiB (rank ",
        options.max_lora_rank, "): ", memory.status().message(),
        "; lower --adapter-slots (or --adapter-cache-mb) or --max-lora-rank"));
  }
  pool->memory_ = *std::move(memory);
  // Touch every page now: a miss then copies at memory speed instead of
  // faulting the slot in, and the pool's memory is really there.
  if (pool->memory_.device() == Device::kCpu) std::memset(pool->memory_.data(), 0, pool->memory_.bytes());
  const size_t entries = static_cast<size_t>(layers) * kNumLinearModules * options.slots;
  pool->lora_.resize(entries);
  pool->diablo_.resize(entries);
  pool->road_.resize(entries);
  pool->slot_ops_.assign(options.slots, AdapterOp::kLowRank);
  pool->occupied_.assign(options.slots, 0);
  return pool;
}

float* AdapterPool::Region(int32_t slot, int32_t layer, LinearModule m) const {
  const size_t i = static_cast<size_t>(layer) * kNumLinearModules + static_cast<int>(m);
  return memory_.as<float>() + region_offset_[i] + slot * stride_[static_cast<int>(m)];
}

bool AdapterPool::MadeFor(const ModelConfig& config) const {
  if (config.num_hidden_layers != config_.num_hidden_layers) return false;
  for (int m = 0; m < kNumLinearModules; ++m) {
    if (BaseLinearShape(config, static_cast<LinearModule>(m)) != BaseLinearShape(config_, static_cast<LinearModule>(m))) {
      return false;
    }
  }
  return true;
}

std::optional<AdapterOp> AdapterPool::op_of(int32_t slot) const {
  if (slot < 0 || slot >= slots_ || !occupied_[slot]) return std::nullopt;
  return slot_ops_[slot];
}

void AdapterPool::Clear(int32_t slot) {
  occupied_[slot] = 0;
  for (int32_t l = 0; l < config_.num_hidden_layers; ++l) {
    for (int m = 0; m < kNumLinearModules; ++m) {
      const size_t i = Table(l, static_cast<LinearModule>(m)) + slot;
      lora_[i] = {};
      diablo_[i] = {};
      road_[i] = {};
    }
  }
}

absl::Status AdapterPool::WriteModule(int32_t slot, int32_t layer, LinearModule m, const AdapterModule& module) {
  const auto [out, in] = BaseLinearShape(config_, m);
  const int64_t stride = stride_[static_cast<int>(m)];
  float* region = Region(slot, layer, m);
  const size_t i = Table(layer, m) + slot;
  auto mismatch = [&](const char* what) {
    return absl::InvalidArgumentError(absl::StrCat("adapter pool: layer ", layer, " ", LinearModuleName(m), ": ",
                                                   what, " does not fit this model's slot"));
  };
  if (module.lora) {
    const LoraModule& w = *module.lora;
    if (w.rank < 1 || w.rank > max_rank_) {
      return absl::InvalidArgumentError(absl::StrCat("adapter pool: rank ", w.rank, " is over --max-lora-rank ",
                                                     max_rank_));
    }
    if (static_cast<int64_t>(w.a.size()) != w.rank * in || static_cast<int64_t>(w.b.size()) != out * w.rank) {
      return mismatch("LoRA A/B");
    }
    std::memcpy(region, w.a.data(), w.a.size() * sizeof(float));
    std::memcpy(region + w.a.size(), w.b.data(), w.b.size() * sizeof(float));
    lora_[i] = {region, region + w.a.size(), w.rank, w.scale};
  } else if (module.diablo) {
    const DiabloModule& w = *module.diablo;
    const int64_t n = int64_t{w.blocks} * w.d1 * w.d2;
    if (w.blocks < 1 || w.d1 < 1 || w.d2 < 1 || n > stride || static_cast<int64_t>(w.block.size()) != n) {
      return mismatch("DiaBlo blocks");
    }
    std::memcpy(region, w.block.data(), w.block.size() * sizeof(float));
    diablo_[i] = {region, w.blocks, w.d1, w.d2};
  } else if (module.road) {
    const RoadModule& w = *module.road;
    if (w.group < 2 || out % w.group != 0 || static_cast<int64_t>(w.c.size()) != out ||
        static_cast<int64_t>(w.s.size()) != out || 2 * out > stride) {
      return mismatch("RoAd c/s");
    }
    std::memcpy(region, w.c.data(), w.c.size() * sizeof(float));
    std::memcpy(region + out, w.s.data(), w.s.size() * sizeof(float));
    road_[i] = {region, region + out, w.group};
  }
  return absl::OkStatus();
}

absl::Status AdapterPool::WriteModuleFrom(int32_t slot, const std::string& name, const AdapterModuleSource& m) {
  const auto [out, in] = BaseLinearShape(config_, m.module);
  const int64_t stride = stride_[static_cast<int>(m.module)];
  float* region = Region(slot, m.layer, m.module);
  const size_t i = Table(m.layer, m.module) + slot;
  auto mismatch = [&](const char* what) {
    return absl::InvalidArgumentError(absl::StrCat("adapter pool: layer ", m.layer, " ", LinearModuleName(m.module),
                                                   ": ", what, " does not fit this model's slot"));
  };
  if (m.a.view) {
    if (m.rank < 1 || m.rank > max_rank_) {
      return absl::InvalidArgumentError(absl::StrCat("adapter pool: rank ", m.rank, " is over --max-lora-rank ",
                                                     max_rank_));
    }
    const int64_t a = m.a.view->numel();
    if (a != m.rank * in || m.b.view == nullptr || m.b.view->numel() != out * m.rank) return mismatch("LoRA A/B");
    TESSERA_RETURN_IF_ERROR(ReadAdapterTensor(name, m.a, region));
    TESSERA_RETURN_IF_ERROR(ReadAdapterTensor(name, m.b, region + a));
    lora_[i] = {region, region + a, m.rank, m.scale};
  } else if (m.block.view) {
    const int64_t n = int64_t{m.blocks} * m.d1 * m.d2;
    if (m.blocks < 1 || m.d1 < 1 || m.d2 < 1 || n > stride || m.block.view->numel() != n) {
      return mismatch("DiaBlo blocks");
    }
    TESSERA_RETURN_IF_ERROR(ReadAdapterTensor(name, m.block, region));
    diablo_[i] = {region, m.blocks, m.d1, m.d2};
  } else if (m.theta.view && m.alpha.view) {
    if (m.group < 2 || out % m.group != 0 || 2 * out > stride) return mismatch("RoAd c/s");
    TESSERA_RETURN_IF_ERROR(ReadRoadCoefficients(name, m, out, region, region + out));
    road_[i] = {region, region + out, m.group};
  }
  return absl::OkStatus();
}

absl::Status AdapterPool::BeginWrite(int32_t slot, const Adapter& adapter) {
  if (slot < 0 || slot >= slots_) {
    return absl::InvalidArgumentError(absl::StrCat("adapter pool: slot ", slot, " of ", slots_));
  }
  Clear(slot);
  if (adapter.num_layers != config_.num_hidden_layers) {
    return absl::InvalidArgumentError(absl::StrCat("adapter '", adapter.name, "' has ", adapter.num_layers,
                                                   " layers of weights; this model has ",
                                                   config_.num_hidden_layers));
  }
  return absl::OkStatus();
}

absl::Status AdapterPool::WriteFrom(int32_t slot, const AdapterSource& source, int threads) {
  TESSERA_RETURN_IF_ERROR(BeginWrite(slot, *source.adapter));
  const size_t n = source.modules.size();
  std::atomic<size_t> next{0};
  Mutex mu;
  absl::Status first_error;
  auto work = [&] {
    for (size_t k = next++; k < n; k = next++) {
      absl::Status s = WriteModuleFrom(slot, source.adapter->name, source.modules[k]);
      if (!s.ok()) {
        MutexLock lock(&mu);
        if (first_error.ok()) first_error = std::move(s);
        next = n;  // the others stop at their next module
      }
    }
  };
  std::vector<std::thread> helpers;
  for (int t = 1; t < threads && static_cast<size_t>(t) < n; ++t) {
    try {
      helpers.emplace_back(work);
    } catch (const std::system_error&) {
      break;  // no thread to be had: the ones started (and this one) do it all
    }
  }
  work();
  for (std::thread& h : helpers) h.join();
  if (!first_error.ok()) {
    Clear(slot);
    if (absl::StartsWith(first_error.message(), "adapter '")) return first_error;
    return absl::InvalidArgumentError(absl::StrCat("adapter '", source.adapter->name, "': ", first_error.message()));
  }
  slot_ops_[slot] = AdapterOpOf(source.adapter->kind);
  occupied_[slot] = 1;
  return absl::OkStatus();
}

absl::Status AdapterPool::Write(int32_t slot, const Adapter& adapter) {
  TESSERA_RETURN_IF_ERROR(BeginWrite(slot, adapter));
  const int32_t layers = config_.num_hidden_layers;
  if (adapter.modules.size() != static_cast<size_t>(layers) * kNumLinearModules) {
    return absl::InvalidArgumentError(absl::StrCat("adapter '", adapter.name, "' has ", adapter.num_layers,
                                                   " layers of weights; this model has ", layers));
  }
  for (int32_t l = 0; l < layers; ++l) {
    for (int m = 0; m < kNumLinearModules; ++m) {
      const absl::Status s = WriteModule(slot, l, static_cast<LinearModule>(m),
                                         adapter.module(l, static_cast<LinearModule>(m)));
      if (!s.ok()) {
        Clear(slot);
        return absl::InvalidArgumentError(absl::StrCat("adapter '", adapter.name, "': ", s.message()));
      }
    }
  }
  slot_ops_[slot] = AdapterOpOf(adapter.kind);
  occupied_[slot] = 1;
  return absl::OkStatus();
}

}  // namespace tessera
