#include "server/scheduler/kv_block_manager.h"

#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace tessera {
namespace {

[[noreturn]] void CheckFailed(const std::string& what) {
  spdlog::critical("CHECK failed: {}", what);
  spdlog::default_logger()->flush();
  std::fprintf(stderr, "CHECK failed: %s\n", what.c_str());
  std::abort();
}

}  // namespace

KvBlockManager::KvBlockManager(int32_t num_blocks, int32_t block_size)
    : num_blocks_(num_blocks), block_size_(block_size) {
  free_.reserve(num_blocks);
  for (int32_t b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
  owner_.assign(static_cast<size_t>(num_blocks), kFree);
}

absl::Status KvBlockManager::Append(uint64_t seq, int32_t n) {
  if (n < 0 || n > free_blocks()) {
    return absl::ResourceExhaustedError(absl::StrCat("KV cache has ", free_blocks(), " free blocks, ", n, " needed"));
  }
  std::vector<int32_t>& table = tables_[seq];
  for (int32_t i = 0; i < n; ++i) {
    const int32_t b = free_.back();
    free_.pop_back();
    owner_[b] = seq;
    table.push_back(b);
  }
  return absl::OkStatus();
}

absl::Span<const int32_t> KvBlockManager::Table(uint64_t seq) const {
  auto it = tables_.find(seq);
  if (it == tables_.end()) return {};
  return it->second;
}

void KvBlockManager::Release(uint64_t seq) {
  auto it = tables_.find(seq);
  if (it == tables_.end()) {
    CheckFailed(absl::StrCat("KV blocks of sequence ", seq, " released but it holds none (double free)"));
  }
  for (const int32_t b : it->second) {
    if (b < 0 || b >= num_blocks_ || owner_[b] != seq) {
      const std::string held = b < 0 || b >= num_blocks_ ? "out of range"
                               : owner_[b] == kFree      ? "already free"
                                                         : absl::StrCat("held by sequence ", owner_[b]);
      CheckFailed(absl::StrCat("KV block ", b, " in the table of sequence ", seq, " is ", held));
    }
    owner_[b] = kFree;
  }
  free_.insert(free_.end(), it->second.rbegin(), it->second.rend());
  tables_.erase(it);
}

}  // namespace tessera
