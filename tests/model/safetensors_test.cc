#include "model/safetensors.h"

#include <cstring>

#include "gtest/gtest.h"
#include "tests/support/fixtures.h"

namespace tessera {
namespace {

using testing::TempDir;

std::vector<uint8_t> FloatBytes(const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// A raw file: 8-byte length, header text, then data bytes.
std::string RawFile(const std::string& header, size_t data_bytes, uint64_t claimed_len = 0) {
  std::string s(8, '\0');
  const uint64_t n = claimed_len ? claimed_len : header.size();
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(n >> (8 * i));
  return s + header + std::string(data_bytes, '\0');
}

TEST(SafetensorsTest, WriteThenReadAllDtypes) {
  TempDir dir;
  std::vector<TensorToWrite> ts;
  ts.push_back({"a", DType::kF32, {2, 3}, FloatBytes({1, 2, 3, 4, 5, -6})});
  std::vector<uint8_t> bf(4);
  const uint16_t one = FloatToBf16(1.0f), half = FloatToBf16(-0.5f);
  std::memcpy(bf.data(), &one, 2);
  std::memcpy(bf.data() + 2, &half, 2);
  ts.push_back({"b", DType::kBF16, {2}, bf});
  std::vector<uint8_t> f16 = {0x00, 0x3C, 0x00, 0xC0};  // 1.0, -2.0
  ts.push_back({"c", DType::kF16, {2}, f16});
  ASSERT_TRUE(WriteSafetensors(dir.Join("x.safetensors"), ts).ok());
  auto f = SafetensorsFile::Open(dir.Join("x.safetensors"));
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->Find("a")->ToFloat(), (std::vector<float>{1, 2, 3, 4, 5, -6}));
  EXPECT_EQ((*f)->Find("b")->ToFloat(), (std::vector<float>{1.0f, -0.5f}));
  EXPECT_EQ((*f)->Find("c")->ToFloat(), (std::vector<float>{1.0f, -2.0f}));
  EXPECT_EQ((*f)->Find("missing"), nullptr);
}

TEST(SafetensorsTest, Bf16RoundsToNearestEven) {
  EXPECT_EQ(FloatToBf16(1.0f), 0x3F80);
  // 1 + 2^-8 is halfway between two bf16 values: ties to even (down).
  EXPECT_EQ(FloatToBf16(1.00390625f), 0x3F80);
  EXPECT_EQ(FloatToBf16(1.01171875f), 0x3F82);  // 1 + 3*2^-8 ties up to even
}

TEST(SafetensorsTest, F16RoundTripsAndRounds) {
  for (float f : {0.0f, 1.0f, -2.5f, 65504.0f, 6.103515625e-05f, 5.960464477539063e-08f, 0.333251953125f}) {
    EXPECT_EQ(F16ToFloat(FloatToF16(f)), f) << f;
  }
  EXPECT_EQ(FloatToF16(1.0f), 0x3C00);
  EXPECT_EQ(FloatToF16(1.0f + 1.0f / 2048), 0x3C00);  // tie to even
  EXPECT_EQ(FloatToF16(1.0f + 3.0f / 2048), 0x3C02);
  EXPECT_EQ(FloatToF16(1e6f), 0x7C00);
  EXPECT_EQ(FloatToF16(-1e-9f), 0x8000);
}

void ExpectOpenFails(const std::string& content, const std::string& needle) {
  TempDir dir;
  const std::string path = dir.Join("bad.safetensors");
  testing::WriteFileOrDie(path, content);
  auto f = SafetensorsFile::Open(path);
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find(path), std::string::npos) << f.status();
  EXPECT_NE(f.status().message().find(needle), std::string::npos) << f.status();
}

TEST(SafetensorsTest, RejectsTruncatedAndCorruptFiles) {
  ExpectOpenFails("abc", "too short");
  ExpectOpenFails(RawFile("{}", 0, 1000), "exceeds the file size");
  ExpectOpenFails(RawFile("{not json", 0), "not valid JSON");
  ExpectOpenFails(RawFile(R"({"t":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8),
                  "past the end of the data");
  ExpectOpenFails(RawFile(R"({"t":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})", 8),
                  "unsupported dtype 'I64'");
  ExpectOpenFails(RawFile(R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8), "needs 12");
  ExpectOpenFails(RawFile(R"({"t":{"dtype":"F32","shape":[2]}})", 8), "data_offsets");
}

TEST(SafetensorsTest, RejectsOverflowingShapesOverlapsAndHostileNames) {
  // [2^62] F32 claims 2^64 bytes: the product overflows, it is not "0 bytes".
  ExpectOpenFails(RawFile(R"({"t":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]}})", 0),
                  "more bytes than fit in 64 bits");
  ExpectOpenFails(
      RawFile(R"({"t":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", 0),
      "more elements than fit in 64 bits");
  ExpectOpenFails(RawFile(R"({"t":{"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,0]}})", 0),
                  "bad dimension");
  ExpectOpenFails(RawFile(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                          R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                          12),
                  "tensor 'b' (bytes [4, 12)) overlaps tensor 'a' (bytes [0, 8))");
  const std::string long_name(60000, 'n');
  ExpectOpenFails(RawFile("{\"" + long_name + R"(":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4),
                  "over the limit of 1024");
  ExpectOpenFails(RawFile(std::string(100000, '[') + std::string(100000, ']'), 0), "more than 64 levels deep");
}

TEST(SafetensorsTest, FromBytesSeesWhatOpenSees) {
  const std::string path = testing::TinyLlamaDir() + "/adapters/road/adapter_model.safetensors";
  auto opened = SafetensorsFile::Open(path);
  ASSERT_TRUE(opened.ok()) << opened.status();
  auto held = SafetensorsFile::FromBytes(testing::ReadFileOrDie(path), "road");
  ASSERT_TRUE(held.ok()) << held.status();
  ASSERT_EQ((*held)->tensors().size(), (*opened)->tensors().size());
  for (const auto& [name, view] : (*opened)->tensors()) {
    const TensorView* other = (*held)->Find(name);
    ASSERT_NE(other, nullptr) << name;
    EXPECT_EQ(other->shape, view.shape);
    EXPECT_EQ(other->ToFloat(), view.ToFloat());
    (*held)->ReleasePages(*other);  // a no-op on owned bytes
    EXPECT_EQ(other->ToFloat(), view.ToFloat());
  }
  auto bad = SafetensorsFile::FromBytes(RawFile("{not json", 0), "inline");
  EXPECT_NE(bad.status().message().find("inline: header: not valid JSON"), std::string::npos) << bad.status();
}

TEST(SafetensorsTest, TruncatedFixtureCheckpoint) {
  const std::string good = testing::ReadFileOrDie(testing::TinyLlamaModelDir() + "/model.safetensors");
  ExpectOpenFails(good.substr(0, good.size() / 2), "past the end of the data");
}

TEST(SafetensorsTest, MissingFile) {
  auto f = SafetensorsFile::Open("/nonexistent/x.safetensors");
  EXPECT_EQ(f.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace tessera
