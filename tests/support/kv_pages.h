// KV pages for tests and benchmarks that drive an Engine directly, without
// a scheduler: a KvBlockManager sized from the engine, handing out one block
// table per Take.
#ifndef TESSERA_TESTS_SUPPORT_KV_PAGES_H_
#define TESSERA_TESTS_SUPPORT_KV_PAGES_H_

#include <cstdint>
#include <map>
#include <vector>

#include "absl/status/statusor.h"
#include "server/engine/engine.h"
#include "server/scheduler/kv_block_manager.h"

namespace tessera::testing {

class KvPages {
 public:
  explicit KvPages(const Engine& engine)
      : kv_(engine.plan_limits().num_blocks, engine.plan_limits().block_size) {}

  // A block table covering `tokens` entries; ResourceExhausted when the
  // cache has too few free pages.
  absl::StatusOr<std::vector<int32_t>> Take(int64_t tokens) {
    const uint64_t seq = next_++;
    if (absl::Status s = kv_.Append(seq, kv_.BlocksFor(tokens)); !s.ok()) return s;
    const absl::Span<const int32_t> t = kv_.Table(seq);
    std::vector<int32_t> blocks(t.begin(), t.end());
    if (!blocks.empty()) by_first_page_[blocks[0]] = seq;
    return blocks;
  }
  // Returns a table from Take.
  void Give(const std::vector<int32_t>& blocks) {
    if (blocks.empty()) return;
    auto it = by_first_page_.find(blocks[0]);
    if (it == by_first_page_.end()) return;
    kv_.Release(it->second);
    by_first_page_.erase(it);
  }
  int32_t free_blocks() const { return kv_.free_blocks(); }

 private:
  KvBlockManager kv_;
  uint64_t next_ = 1;
  std::map<int32_t, uint64_t> by_first_page_;
};

}  // namespace tessera::testing

#endif  // TESSERA_TESTS_SUPPORT_KV_PAGES_H_
