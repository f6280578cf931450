// The KV cache's bookkeeping: which pages (blocks) are free and which
// sequence holds which, as one block table per sequence that grows by
// appending (never rebuilt, so a page keeps its place for the sequence's
// life). The pages' memory is the engine's (server/engine/kv_storage.h); this
// class only hands out indices.
//
// Releasing a sequence that holds nothing (a double free), or finding a page
// that another sequence holds in its table, is memory corruption in the
// making: it CHECK-fails (logs and aborts) instead of serving one sequence's
// cache to another.
//
// Thread safety: none; owned by the scheduler thread. num_blocks(),
// block_size() and BlocksFor() are immutable and may be read anywhere.
#ifndef TESSERA_SERVER_SCHEDULER_KV_BLOCK_MANAGER_H_
#define TESSERA_SERVER_SCHEDULER_KV_BLOCK_MANAGER_H_

#include <cstdint>
#include <map>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace tessera {

class KvBlockManager {
 public:
  KvBlockManager(int32_t num_blocks, int32_t block_size);

  int32_t num_blocks() const { return num_blocks_; }
  int32_t block_size() const { return block_size_; }
  int32_t free_blocks() const { return static_cast<int32_t>(free_.size()); }
  int32_t used_blocks() const { return num_blocks_ - free_blocks(); }
  int32_t BlocksFor(int64_t tokens) const {
    return static_cast<int32_t>((tokens + block_size_ - 1) / block_size_);
  }

  // Appends n free pages to seq's table (creating it); ResourceExhausted,
  // taking nothing, when fewer than n are free.
  absl::Status Append(uint64_t seq, int32_t n);
  // seq's pages in order; empty when it holds none. Valid until seq's next
  // Append or Release.
  absl::Span<const int32_t> Table(uint64_t seq) const;
  bool Holds(uint64_t seq) const { return tables_.count(seq) != 0; }
  // Returns every page of seq to the free list. CHECK-fails when seq holds
  // nothing (double free) or a page of its table is not recorded as seq's.
  void Release(uint64_t seq);

 private:
  friend class KvBlockManagerTestPeer;  // corrupts the books to test the CHECKs
  static constexpr uint64_t kFree = ~uint64_t{0};

  int32_t num_blocks_;
  int32_t block_size_;
  std::vector<int32_t> free_;                        // a stack of free pages
  std::vector<uint64_t> owner_;                      // per page; kFree when free
  std::map<uint64_t, std::vector<int32_t>> tables_;  // per sequence
};

}  // namespace tessera

#endif  // TESSERA_SERVER_SCHEDULER_KV_BLOCK_MANAGER_H_
