#include "common/sha256.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace tessera {
namespace {

constexpr char kEmptySha[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
constexpr char kAbcSha[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

TEST(Sha256Test, KnownVectors) {
  EXPECT_EQ(Sha256Hex(""), kEmptySha);
  EXPECT_EQ(Sha256Hex("abc"), kAbcSha);
  EXPECT_EQ(Sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  Sha256 nothing;
  EXPECT_EQ(nothing.HexDigest(), kEmptySha);
}

TEST(Sha256Test, IncrementalEqualsOneShotAndDigestDoesNotDisturbState) {
  Sha256 sha;
  sha.Update("a");
  EXPECT_EQ(sha.HexDigest(), Sha256Hex("a"));
  sha.Update("");
  sha.Update("b");
  EXPECT_EQ(sha.HexDigest(), Sha256Hex("ab"));
  sha.Update("c");
  EXPECT_EQ(sha.HexDigest(), kAbcSha);
  EXPECT_EQ(sha.HexDigest(), kAbcSha);

  std::string big(3 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 131) ^ (i >> 9));
  Sha256 chunks;
  for (size_t i = 0; i < big.size(); i += 7777) chunks.Update(std::string_view(big).substr(i, 7777));
  EXPECT_EQ(chunks.HexDigest(), Sha256Hex(big));
}

TEST(Sha256Test, FileDigestStreamsWholeFile) {
  const std::string path = ::testing::TempDir() + "/sha256_test_" + std::to_string(::getpid()) + ".bin";
  std::string content(2 * (1 << 20) + 12345, '\0');
  for (size_t i = 0; i < content.size(); ++i) content[i] = static_cast<char>(i * 7 + (i >> 11));
  {
    std::ofstream out(path, std::ios::binary);
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
  }
  absl::StatusOr<std::string> digest = Sha256HexOfFile(path);
  ASSERT_TRUE(digest.ok()) << digest.status();
  EXPECT_EQ(*digest, Sha256Hex(content));
  std::filesystem::remove(path);

  absl::StatusOr<std::string> missing = Sha256HexOfFile(path);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find(path), absl::string_view::npos) << missing.status();
}

}  // namespace
}  // namespace tessera
