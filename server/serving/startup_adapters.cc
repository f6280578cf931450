#include "server/serving/startup_adapters.h"

#include <cctype>

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

absl::Status StartupAdapters::Load(const std::string& name, const std::string& dir, const ModelConfig& base,
                                   const AdapterLimits& limits, AdapterCache& cache) {
  if (entries_.count(name)) {
    return absl::AlreadyExistsError(absl::StrCat("adapter name '", name, "' is given twice"));
  }
  Entry& e = entries_[name];
  e.dir = dir;
  absl::StatusOr<std::shared_ptr<const Adapter>> a = LoadAdapter(name, dir, base, limits);
  e.error = a.ok() ? cache.AddPermanent(name, *a) : a.status();
  if (!e.error.ok()) spdlog::error("{}", std::string(e.error.message()));
  return e.error;
}

absl::Status StartupAdapters::Resolve(const std::string& name) const {
  auto it = entries_.find(name);
  if (it != entries_.end()) {
    if (it->second.error.ok()) return absl::OkStatus();
    return absl::FailedPreconditionError(
        absl::StrCat("adapter '", name, "' failed to load at start-up: ", it->second.error.message()));
  }
  const std::vector<std::string> names = Names();
  return absl::NotFoundError(absl::StrCat("adapter '", name, "' is not loaded on this server (loaded: ",
                                          names.empty() ? "none" : absl::StrJoin(names, ", "),
                                          "); omit the adapter to use the base model"));
}

absl::StatusOr<std::shared_ptr<const Adapter>> StartupAdapters::Reload(const std::string& name,
                                                                       const ModelConfig& base,
                                                                       const AdapterLimits& limits) const {
  if (absl::Status s = Resolve(name); !s.ok()) return s;
  return LoadAdapter(name, entries_.at(name).dir, base, limits);
}

std::vector<std::string> StartupAdapters::Names() const {
  std::vector<std::string> names;
  for (const auto& [name, e] : entries_) {
    if (e.error.ok()) names.push_back(name);
  }
  return names;
}

}  // namespace tessera
