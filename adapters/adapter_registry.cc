#include "adapters/adapter_registry.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "spdlog/spdlog.h"

namespace tessera {

absl::StatusOr<std::pair<std::string, std::string>> ParseAdapterSpec(const std::string& spec) {
  const size_t eq = spec.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size()) {
    return absl::InvalidArgumentError(absl::StrCat("--adapter '", spec, "' must look like NAME=DIR"));
  }
  const std::string name = spec.substr(0, eq);
  for (char ch : name) {
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '.' && ch != '_' && ch != '-' && ch != '/') {
      return absl::InvalidArgumentError(
          absl::StrCat("adapter name '", name, "' may use only letters, digits and . _ - /"));
    }
  }
  return std::make_pair(name, spec.substr(eq + 1));
}

absl::Status AdapterRegistry::Load(const std::string& name, const std::string& dir, const ModelConfig& base,
                                   const AdapterLimits& limits) {
  if (by_name_.count(name) || failed_.count(name)) {
    return absl::AlreadyExistsError(absl::StrCat("adapter name '", name, "' is given twice"));
  }
  absl::StatusOr<std::shared_ptr<const Adapter>> a = LoadAdapter(name, dir, base, limits);
  if (!a.ok()) {
    spdlog::error("{}", std::string(a.status().message()));
    failed_.emplace(name, a.status());
    return a.status();
  }
  return Add(*std::move(a));
}

absl::Status AdapterRegistry::Add(std::shared_ptr<const Adapter> adapter) {
  if (by_name_.count(adapter->name) || failed_.count(adapter->name)) {
    return absl::AlreadyExistsError(absl::StrCat("adapter name '", adapter->name, "' is given twice"));
  }
  by_name_[adapter->name] = static_cast<int32_t>(slots_.size());
  slots_.push_back(std::move(adapter));
  return absl::OkStatus();
}

absl::StatusOr<int32_t> AdapterRegistry::Resolve(const std::string& name) const {
  auto it = by_name_.find(name);
  if (it != by_name_.end()) return it->second;
  auto failed = failed_.find(name);
  if (failed != failed_.end()) {
    return absl::FailedPreconditionError(
        absl::StrCat("adapter '", name, "' failed to load at start-up: ", failed->second.message()));
  }
  std::vector<std::string> names;
  for (const auto& [n, slot] : by_name_) names.push_back(n);
  return absl::NotFoundError(absl::StrCat("adapter '", name, "' is not loaded on this server (loaded: ",
                                          names.empty() ? "none" : absl::StrJoin(names, ", "),
                                          "); omit the adapter to use the base model"));
}

std::vector<const Adapter*> AdapterRegistry::Slots() const {
  std::vector<const Adapter*> out;
  for (const auto& a : slots_) out.push_back(a.get());
  return out;
}

std::vector<std::string> AdapterRegistry::Kinds() const {
  std::set<std::string> kinds;
  for (const auto& a : slots_) kinds.insert(a->DisplayKind());
  return std::vector<std::string>(kinds.begin(), kinds.end());
}

}  // namespace tessera
