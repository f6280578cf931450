// The adapters named at start-up (--adapter NAME=DIR). Each is loaded once
// and written into a permanent slot of the adapter cache under its name; one
// that fails to load is remembered, so requests for it get its error while
// the others serve.
//
// Thread safety: populate before serving; afterwards the list is immutable
// and may be read from any thread.
#ifndef TESSERA_SERVER_SERVING_STARTUP_ADAPTERS_H_
#define TESSERA_SERVER_SERVING_STARTUP_ADAPTERS_H_

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "adapters/adapter.h"
#include "adapters/adapter_cache.h"
#include "model/model_config.h"

namespace tessera {

// "NAME=DIR" -> {NAME, DIR}; names use letters, digits and ._-/ .
absl::StatusOr<std::pair<std::string, std::string>> ParseAdapterSpec(const std::string& spec);

class StartupAdapters {
 public:
  // Loads DIR as NAME into a permanent slot of `cache`. AlreadyExists for a
  // name given twice; otherwise the load's or the cache's error, which is
  // also kept for Resolve.
  absl::Status Load(const std::string& name, const std::string& dir, const ModelConfig& base,
                    const AdapterLimits& limits, AdapterCache& cache);

  // OK when NAME serves; FailedPrecondition with the load error when it
  // failed; NotFound (naming those that serve) when it was never given.
  absl::Status Resolve(const std::string& name) const;
  // Reads NAME's files again (what ownership verification inspects: the
  // cache keeps only the pool's copy of the weights).
  absl::StatusOr<std::shared_ptr<const Adapter>> Reload(const std::string& name, const ModelConfig& base,
                                                        const AdapterLimits& limits) const;
  // The names that serve, sorted.
  std::vector<std::string> Names() const;

 private:
  struct Entry {
    std::string dir;
    absl::Status error;
  };
  std::map<std::string, Entry> entries_;
};

}  // namespace tessera

#endif  // TESSERA_SERVER_SERVING_STARTUP_ADAPTERS_H_
