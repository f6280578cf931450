#include "common/sha256.h"

#include <openssl/evp.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"

namespace tessera {
namespace {

// OpenSSL fails here only on allocation failure or a broken installation;
// there is nothing a caller could do, so it is fatal.
void CheckOpenSsl(int ok, const char* what) {
  if (ok != 1) {
    std::fprintf(stderr, "tessera: OpenSSL %s failed (out of memory or broken libcrypto)\n", what);
    std::abort();
  }
}

std::string ToHex(const unsigned char* bytes, unsigned int n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(2 * n, '0');
  for (unsigned int i = 0; i < n; ++i) {
    out[2 * i] = kDigits[bytes[i] >> 4];
    out[2 * i + 1] = kDigits[bytes[i] & 0xf];
  }
  return out;
}

}  // namespace

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  if (ctx_ == nullptr) CheckOpenSsl(0, "EVP_MD_CTX_new");
  CheckOpenSsl(EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr), "EVP_DigestInit_ex");
}

Sha256::~Sha256() { EVP_MD_CTX_free(ctx_); }

void Sha256::Update(std::string_view data) {
  if (data.empty()) return;
  CheckOpenSsl(EVP_DigestUpdate(ctx_, data.data(), data.size()), "EVP_DigestUpdate");
}

std::string Sha256::HexDigest() const {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> copy(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  if (copy == nullptr) CheckOpenSsl(0, "EVP_MD_CTX_new");
  CheckOpenSsl(EVP_MD_CTX_copy_ex(copy.get(), ctx_), "EVP_MD_CTX_copy_ex");
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  CheckOpenSsl(EVP_DigestFinal_ex(copy.get(), digest, &n), "EVP_DigestFinal_ex");
  return ToHex(digest, n);
}

std::string Sha256Hex(std::string_view data) {
  Sha256 sha;
  sha.Update(data);
  return sha.HexDigest();
}

absl::StatusOr<int64_t> HashFileInto(const std::string& path, Sha256* sha) {
  return ReadFileInChunks(path, [sha](std::string_view chunk) { sha->Update(chunk); });
}

absl::StatusOr<int64_t> HashFileInto(const std::string& path, Sha256* sha,
                                     const std::function<void(size_t)>& after_chunk) {
  return ReadFileInChunks(path, [&](std::string_view chunk) {
    sha->Update(chunk);
    if (after_chunk) after_chunk(chunk.size());
  });
}

absl::StatusOr<std::string> Sha256HexOfFile(const std::string& path) {
  Sha256 sha;
  absl::StatusOr<int64_t> bytes = HashFileInto(path, &sha);
  if (!bytes.ok()) return bytes.status();
  return sha.HexDigest();
}

}  // namespace tessera
