// The adapters a process serves, by name. Each gets a fixed slot (its index),
// which BatchPlan adapter segments refer to. The adapter-upload issue replaces
// this start-up list with a store and a resident cache.
//
// Thread safety: populate before serving; afterwards the registry is
// immutable and may be read from any thread.
#ifndef TESSERA_ADAPTERS_ADAPTER_REGISTRY_H_
#define TESSERA_ADAPTERS_ADAPTER_REGISTRY_H_

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "adapters/adapter.h"

namespace tessera {

// "NAME=DIR" -> {NAME, DIR}; names use letters, digits and ._-/ .
absl::StatusOr<std::pair<std::string, std::string>> ParseAdapterSpec(const std::string& spec);

class AdapterRegistry {
 public:
  // Loads DIR as NAME. On failure the error is kept: requests for NAME then
  // get it (FailedPrecondition) and the other adapters keep serving.
  absl::Status Load(const std::string& name, const std::string& dir, const ModelConfig& base,
                    const AdapterLimits& limits);
  // Registers an adapter built in memory (benchmarks, tests).
  absl::Status Add(std::shared_ptr<const Adapter> adapter);

  // The slot of NAME: NotFound when never named, FailedPrecondition with the
  // load error when it failed to load.
  absl::StatusOr<int32_t> Resolve(const std::string& name) const;
  const Adapter& at(int32_t slot) const { return *slots_[slot]; }
  // Every adapter by slot, for Engine::Step.
  std::vector<const Adapter*> Slots() const;
  const std::vector<std::shared_ptr<const Adapter>>& all() const { return slots_; }
  int32_t size() const { return static_cast<int32_t>(slots_.size()); }
  // Kinds served ("lora", "seal", "road", "diablo"), sorted, without repeats.
  std::vector<std::string> Kinds() const;

 private:
  std::vector<std::shared_ptr<const Adapter>> slots_;
  std::map<std::string, int32_t> by_name_;
  std::map<std::string, absl::Status> failed_;
};

}  // namespace tessera

#endif  // TESSERA_ADAPTERS_ADAPTER_REGISTRY_H_
