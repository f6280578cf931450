// SHA-256 over OpenSSL's EVP interface: an incremental hasher, a one-shot
// helper and a streaming file digest. Digests are lowercase hex (64 chars).
//
// Thread safety: a Sha256 object is not thread-safe; use one per thread or
// guard it externally. The free functions are thread-safe.
#ifndef TESSERA_COMMON_SHA256_H_
#define TESSERA_COMMON_SHA256_H_

#include <functional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

typedef struct evp_md_ctx_st EVP_MD_CTX;

namespace tessera {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  // Feeds more bytes into the digest.
  void Update(std::string_view data);
  // Hex digest of every byte given so far. Does not disturb the running
  // state: Update may be called again afterwards.
  std::string HexDigest() const;

 private:
  EVP_MD_CTX* ctx_;
};

// Hex sha256 of `data`.
std::string Sha256Hex(std::string_view data);

// Hex sha256 of the file at `path`, read in chunks. NotFound when it does not
// exist, another error when it cannot be read.
absl::StatusOr<std::string> Sha256HexOfFile(const std::string& path);
// Streams the file into sha (so several files can share one digest); returns
// its size. NotFound when missing.
absl::StatusOr<int64_t> HashFileInto(const std::string& path, Sha256* sha);
// The same, calling after_chunk(bytes) after each chunk (pacing, progress).
absl::StatusOr<int64_t> HashFileInto(const std::string& path, Sha256* sha,
                                     const std::function<void(size_t)>& after_chunk);

}  // namespace tessera

#endif  // TESSERA_COMMON_SHA256_H_
