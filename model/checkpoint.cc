#include "model/checkpoint.h"

#include <filesystem>
#include <fstream>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/json_util.h"
#include "nlohmann/json.hpp"

namespace tessera {

namespace fs = std::filesystem;

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::string& dir) {
  std::vector<std::string> paths;
  const fs::path index_path = fs::path(dir) / "model.safetensors.index.json";
  std::error_code ec;
  if (fs::exists(index_path, ec)) {
    absl::StatusOr<nlohmann::json> parsed = ReadJsonFile(index_path.string());
    if (!parsed.ok()) return parsed.status();
    const nlohmann::json& index = *parsed;
    if (!index.contains("weight_map") || !index["weight_map"].is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat(index_path.string(), ": missing the 'weight_map' object"));
    }
    std::set<std::string> shards;
    for (auto& [name, file] : index["weight_map"].items()) {
      if (!file.is_string()) {
        return absl::InvalidArgumentError(
            absl::StrCat(index_path.string(), ": weight_map['", name, "'] is not a file name"));
      }
      shards.insert(file.get<std::string>());
    }
    for (const std::string& s : shards) paths.push_back((fs::path(dir) / s).string());
  } else if (fs::exists(fs::path(dir) / "model.safetensors", ec)) {
    paths.push_back((fs::path(dir) / "model.safetensors").string());
  } else {
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      if (e.path().extension() == ".safetensors") paths.push_back(e.path().string());
    }
    std::sort(paths.begin(), paths.end());
  }
  if (paths.empty()) {
    return absl::NotFoundError(
        absl::StrCat(dir,
                     ": no *.safetensors weights found (PyTorch .bin checkpoints are not supported; "
                     "re-save the model with safe_serialization=True)"));
  }
  auto ckpt = std::make_unique<Checkpoint>();
  for (const std::string& p : paths) {
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> f = SafetensorsFile::Open(p);
    if (!f.ok()) return f.status();
    ckpt->files_.push_back(*std::move(f));
  }
  for (const auto& f : ckpt->files_) {
    for (const auto& [name, view] : f->tensors()) {
      auto [it, inserted] = ckpt->index_.emplace(name, Entry{&view, f.get()});
      if (!inserted) {
        return absl::InvalidArgumentError(
            absl::StrCat("tensor '", name, "' appears in both ", it->second.file->path(), " and ", f->path()));
      }
    }
  }
  return ckpt;
}

Checkpoint::Entry Checkpoint::Find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? Entry{} : it->second;
}

}  // namespace tessera
