#include "common/flags.h"

#include "gtest/gtest.h"

namespace tessera {
namespace {

TEST(FlagsTest, DashedNamesBecomeUnderscoresValuesStayIntact) {
  std::vector<std::string> in = {
      "prog",       "--max-batch-size=8", "--port-file", "/tmp/a-b",    "-kv-block-size=4",
      "--stop=a-b", "generate",           "--",          "--not-a-flag"};
  std::vector<char*> argv;
  for (auto& s : in) argv.push_back(s.data());
  std::vector<std::string> out = NormalizeFlagNames(static_cast<int>(argv.size()), argv.data());
  EXPECT_EQ(out,
            (std::vector<std::string>{"prog", "--max_batch_size=8", "--port_file", "/tmp/a-b",
                                      "-kv_block_size=4", "--stop=a-b", "generate", "--", "--not-a-flag"}));
}

TEST(FlagsTest, RepeatableFlagsAreJoined) {
  std::vector<std::string> in = {"prog",           "--adapter", "a=/x", "--model=m",
                                 "--adapter=b=/y", "--threads", "2"};
  std::vector<char*> argv;
  for (auto& s : in) argv.push_back(s.data());
  std::vector<std::string> out = NormalizeFlagNames(static_cast<int>(argv.size()), argv.data());
  EXPECT_EQ(out, (std::vector<std::string>{"prog", "--adapter=a=/x,b=/y", "--model=m", "--threads", "2"}));
}

}  // namespace
}  // namespace tessera
