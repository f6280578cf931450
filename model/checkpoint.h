// The safetensors files of one HF model folder: model.safetensors, the shards
// named by model.safetensors.index.json, or every *.safetensors present.
//
// Thread safety: immutable after Open.
#ifndef TESSERA_MODEL_CHECKPOINT_H_
#define TESSERA_MODEL_CHECKPOINT_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/safetensors.h"

namespace tessera {

class Checkpoint {
 public:
  static absl::StatusOr<std::unique_ptr<Checkpoint>> Open(const std::string& dir);

  struct Entry {
    const TensorView* view = nullptr;
    const SafetensorsFile* file = nullptr;  // the file holding it
  };
  // Null view when the tensor is absent.
  Entry Find(const std::string& name) const;
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }
  size_t num_tensors() const { return index_.size(); }

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, Entry> index_;
};

}  // namespace tessera

#endif  // TESSERA_MODEL_CHECKPOINT_H_
