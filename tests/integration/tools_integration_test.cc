// The tessera CLI against a real server, and tessera-batch end to end.
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/sha256.h"
#include "absl/strings/numbers.h"
#include "common/version.h"
#include "gtest/gtest.h"
#include "tests/support/fixtures.h"
#include "tests/support/subprocess.h"

namespace tessera {
namespace {

using nlohmann::json;
using testing::BinaryPath;
using testing::Greedy;
using testing::PromptIds;
using testing::RunCommand;

std::vector<json> ReadJsonLines(const std::string& path) {
  std::ifstream in(path);
  std::vector<json> out;
  std::string line;
  while (std::getline(in, line)) out.push_back(json::parse(line));
  return out;
}

std::string PromptText(int p) { return testing::Expected()["prompts"][p]["text"].get<std::string>(); }

TEST(CliTest, GenerateInfoAndErrors) {
  auto server = testing::ServerProcess::Start(testing::TinyLlamaModelDir());
  ASSERT_NE(server, nullptr);
  const std::string cli = BinaryPath("client/tessera");

  auto r = RunCommand({cli, "generate", "--server", server->address(), "--prompt", PromptText(1),
                       "--max-new-tokens", "16", "--ignore-eos", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  json j = json::parse(r.output);
  EXPECT_EQ(j["token_ids"].get<std::vector<int32_t>>(), Greedy("base", 1));
  EXPECT_EQ(j["finish_reason"], "length");  // the spelling of batch output and the HTTP API
  EXPECT_EQ(j["usage"]["prompt_tokens"], 28);

  // tokenize / detokenize through the server's tokenizer.
  auto t = RunCommand({cli, "tokenize", "--server", server->address(), "--prompt", PromptText(1), "--json"});
  ASSERT_EQ(t.exit_code, 0) << t.output;
  EXPECT_EQ(json::parse(t.output)["ids"].get<std::vector<int32_t>>(), PromptIds(1));
  std::string ids;
  for (int32_t id : PromptIds(1)) ids += (ids.empty() ? "" : ",") + std::to_string(id);
  auto d = RunCommand({cli, "detokenize", "--server", server->address(), "--ids", ids});
  ASSERT_EQ(d.exit_code, 0) << d.output;
  EXPECT_EQ(d.output, PromptText(1) + "\n");
  auto bad_ids = RunCommand({cli, "detokenize", "--server", server->address(), "--ids", "1,x"});
  EXPECT_EQ(bad_ids.exit_code, 1);
  EXPECT_NE(bad_ids.output.find("'x' is not a token id"), std::string::npos) << bad_ids.output;

  // Streaming text output equals the unary text (plus the trailing newline).
  auto plain = RunCommand({cli, "generate", "--server", server->address(), "--prompt", PromptText(3),
                           "--max-new-tokens", "12", "--ignore-eos"});
  auto streamed = RunCommand({cli, "generate", "--server", server->address(), "--prompt", PromptText(3),
                              "--max-new-tokens", "12", "--ignore-eos", "--stream"});
  ASSERT_EQ(plain.exit_code, 0) << plain.output;
  ASSERT_EQ(streamed.exit_code, 0) << streamed.output;
  EXPECT_EQ(plain.output, streamed.output);

  // Seeded sampling is reproducible through the CLI.
  std::vector<std::string> sample = {
      cli,   "generate", "--server", server->address(), "--prompt", "Once upon", "--temperature",
      "0.9", "--top-p",  "0.9",      "--seed",          "5",        "--json"};
  auto a = RunCommand(sample), b = RunCommand(sample);
  ASSERT_EQ(a.exit_code, 0) << a.output;
  EXPECT_EQ(json::parse(a.output)["token_ids"], json::parse(b.output)["token_ids"]);
  EXPECT_EQ(json::parse(a.output)["seed"], "5");

  auto info = RunCommand({cli, "info", "--server", server->address()});
  ASSERT_EQ(info.exit_code, 0) << info.output;
  EXPECT_NE(info.output.find("LlamaForCausalLM"), std::string::npos) << info.output;
  EXPECT_NE(info.output.find("context length: 256"), std::string::npos) << info.output;

  auto bad = RunCommand({cli, "generate", "--server", server->address(), "--prompt", "x", "--top-p", "2"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.output.find("error: INVALID_ARGUMENT: top_p must be in (0, 1]"), std::string::npos)
      << bad.output;

  auto usage = RunCommand({cli, "frobnicate"});
  EXPECT_EQ(usage.exit_code, 2);
  EXPECT_NE(usage.output.find("unknown command 'frobnicate'"), std::string::npos) << usage.output;
}

// Every binary's --help lists its own flags (with defaults, grouped by source
// file), not absl's "No flags matched"; --version prints Tessera's version,
// not absl's build mode.
TEST(CommandLineTest, HelpListsEachBinarysFlagsAndVersionPrintsTheVersion) {
  const std::pair<const char*, std::vector<const char*>> binaries[] = {
      {"server/tessera-server",
       {"-max_batch_size", "-data_dir", "-adapter_scrub_mb_per_s", "-http_listen", "Flags from server/main.cc"}},
      {"server/tessera-batch", {"-input", "-output"}},
      {"server/tessera-tokenize", {"-tokenizer", "-add_special_tokens"}},
      {"server/tessera-quantize", {"-output"}},
      {"client/tessera", {"-server", "-api_key"}},
      {"bench/tessera-genmodel", {"-preset", "default: \"f32\""}},
  };
  for (const auto& [binary, expected] : binaries) {
    testing::CommandResult help = testing::RunCommand({testing::BinaryPath(binary), "--help"});
    EXPECT_EQ(help.output.find("No flags matched"), std::string::npos) << binary << ":\n" << help.output;
    for (const char* text : expected) {
      EXPECT_NE(help.output.find(text), std::string::npos) << binary << " --help lacks " << text << ":\n" << help.output;
    }
    EXPECT_EQ(help.output.find("absl/flags"), std::string::npos) << binary << " lists absl's own flags";
    testing::CommandResult version = testing::RunCommand({testing::BinaryPath(binary), "--version"});
    EXPECT_NE(version.output.find(Version()), std::string::npos) << binary << ": " << version.output;
    EXPECT_EQ(version.output.find("NDEBUG"), std::string::npos) << binary << ": " << version.output;
  }
}

// `tessera COMMAND --help` lists that command's flags (dashed, with their
// defaults) and the connection flags, and no other command's.
TEST(CommandLineTest, EachCliCommandHasItsOwnHelp) {
  const std::pair<const char*, std::vector<const char*>> commands[] = {
      {"generate", {"--max-new-tokens", "--temperature", "--adapter", "--stop", "(default: 16)"}},
      {"adapters", {"--name", "--shared", "upload DIR"}},
      {"watermark", {"--passport", "--credential"}},
      {"tokenize", {"--add-special-tokens"}},
  };
  for (const auto& [command, expected] : commands) {
    testing::CommandResult help = testing::RunCommand({testing::BinaryPath("client/tessera"), command, "--help"});
    EXPECT_EQ(help.exit_code, 0) << command << ":\n" << help.output;
    for (const char* text : expected) {
      EXPECT_NE(help.output.find(text), std::string::npos) << command << " --help lacks " << text << ":\n"
                                                           << help.output;
    }
    EXPECT_NE(help.output.find("--server"), std::string::npos) << help.output;
  }
  testing::CommandResult gen = testing::RunCommand({testing::BinaryPath("client/tessera"), "generate", "-h"});
  EXPECT_EQ(gen.output.find("--raw-factors"), std::string::npos) << gen.output;
}

// --config FILE: one flag per line (dashed names), comments and blank lines
// skipped; mistakes name the file and line.
TEST(CommandLineTest, ConfigFileSuppliesFlags) {
  testing::TempDir dir;
  const std::string server = testing::BinaryPath("server/tessera-server");
  testing::WriteFileOrDie(dir.Join("ok.conf"), "# limits\n\n--insecure-no-auth\n--max-requests-total=0\n");
  testing::CommandResult r = testing::RunCommand({server, "--config", dir.Join("ok.conf"), "--model", "x"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("--max-requests-total must be positive"), std::string::npos) << r.output;
  testing::WriteFileOrDie(dir.Join("bad.conf"), "--insecure-no-auth\nmax-batch-size 8\n");
  r = testing::RunCommand({server, "--config=" + dir.Join("bad.conf")});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("bad.conf:2: expected one flag per line"), std::string::npos) << r.output;
  testing::WriteFileOrDie(dir.Join("nested.conf"), "--flagfile=" + dir.Join("ok.conf") + "\n");
  r = testing::RunCommand({server, "--config", dir.Join("nested.conf")});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("cannot name another"), std::string::npos) << r.output;
  r = testing::RunCommand({server, "--config", dir.Join("missing.conf")});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("cannot read config file"), std::string::npos) << r.output;
}

TEST(CliTest, NoServerIsAClearError) {
  // A port nothing listens on (the server we start and stop frees it).
  std::string address;
  {
    auto server = testing::ServerProcess::Start(testing::TinyLlamaModelDir());
    ASSERT_NE(server, nullptr);
    address = server->address();
  }
  auto r = RunCommand({BinaryPath("client/tessera"), "info", "--server", address, "--connect-timeout", "1"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("cannot reach a Tessera server at " + address), std::string::npos) << r.output;
}

TEST(CliTest, AdapterCommandsWithAnApiKey) {
  testing::TempDir dir;
  testing::WriteFileOrDie(dir.Join("tenants.json"),
                          R"({"tenants": [{"id": "acme", "role": "user", "api_key_sha256": ")" +
                              Sha256Hex("cli-key") + R"("}]})");
  auto server = testing::ServerProcess::Start(
      testing::TinyLlamaModelDir(), {"--data-dir", dir.Join("data"), "--tenants", dir.Join("tenants.json")});
  ASSERT_NE(server, nullptr);
  const std::string cli = BinaryPath("client/tessera");
  const std::string adapter_dir = testing::TinyLlamaDir() + "/adapters/lora";

  // No key: the gRPC status and message, exit code 1.
  unsetenv("TESSERA_API_KEY");
  auto r = RunCommand({cli, "adapters", "list", "--server", server->address()});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("UNAUTHENTICATED"), std::string::npos) << r.output;

  r = RunCommand({cli, "adapters", "upload", adapter_dir, "--name", "support", "--server", server->address(),
                  "--api-key", "cli-key", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  json up = json::parse(r.output);
  EXPECT_EQ(up["reference"], "acme/support");
  EXPECT_EQ(up["kind"], "lora");
  EXPECT_EQ(up["sha256"].get<std::string>().size(), 64u);

  // The key from the environment.
  setenv("TESSERA_API_KEY", "cli-key", 1);
  r = RunCommand({cli, "adapters", "list", "--server", server->address(), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  json list = json::parse(r.output);
  ASSERT_EQ(list["adapters"].size(), 1u);
  EXPECT_EQ(list["adapters"][0]["sha256"], up["sha256"]);

  r = RunCommand({cli, "adapters", "list", "--server", server->address()});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("acme/support"), std::string::npos) << r.output;

  r = RunCommand({cli, "generate", "--server", server->address(), "--prompt", PromptText(1), "--adapter",
                  "support", "--max-new-tokens", "16", "--ignore-eos", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(json::parse(r.output)["token_ids"].get<std::vector<int32_t>>(), Greedy("lora", 1));

  r = RunCommand({cli, "adapters", "prefetch", "support", "--server", server->address(), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(json::parse(r.output)["state"], "ADAPTER_STATE_RESIDENT");

  r = RunCommand({cli, "adapters", "info", "support", "--server", server->address(), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(json::parse(r.output)["rank"], 8);

  r = RunCommand(
      {cli, "adapters", "upload", adapter_dir, "--name", "support", "--server", server->address()});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("ALREADY_EXISTS"), std::string::npos) << r.output;

  r = RunCommand({cli, "adapters", "rm", "support", "--server", server->address()});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = RunCommand({cli, "adapters", "info", "support", "--server", server->address()});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("NOT_FOUND"), std::string::npos) << r.output;

  r = RunCommand(
      {cli, "adapters", "upload", dir.Join("missing"), "--name", "x", "--server", server->address()});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find(dir.Join("missing")), std::string::npos) << r.output;
  unsetenv("TESSERA_API_KEY");
}

TEST(BatchTest, OfflineBatchMatchesFixtureLogitsAndTokens) {
  testing::TempDir dir;
  {
    std::ofstream in(dir.Join("in.jsonl"));
    for (int p = 0; p < 6; ++p) {
      json line = {{"id", "p" + std::to_string(p)},
                   {"max_new_tokens", 16},
                   {"ignore_eos", true},
                   {"return_logits", "last"}};
      if (p % 2 == 0) {
        line["prompt"] = PromptText(p);
      } else {
        line["prompt_ids"] = PromptIds(p);
      }
      in << line.dump() << "\n";
      if (p == 2) in << "\n";  // blank lines are skipped
    }
    in << json({{"id", 99}, {"prompt", "The end."}, {"max_new_tokens", 2}}).dump() << "\n";
  }
  auto r = RunCommand({BinaryPath("server/tessera-batch"), "--model", testing::TinyLlamaModelDir(), "--input",
                       dir.Join("in.jsonl"), "--output", dir.Join("out.jsonl"), "--threads", "2",
                       "--max-batch-size", "3", "--quantize", "none"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::vector<json> out = ReadJsonLines(dir.Join("out.jsonl"));
  ASSERT_EQ(out.size(), 7u);
  for (int p = 0; p < 6; ++p) {
    EXPECT_EQ(out[p]["id"], "p" + std::to_string(p));
    EXPECT_EQ(out[p]["token_ids"].get<std::vector<int32_t>>(), Greedy("base", p)) << p;
    EXPECT_EQ(out[p]["finish_reason"], "length");
    std::vector<float> logits = out[p]["last_logits"].get<std::vector<float>>();
    EXPECT_LE(testing::MaxAbsDiff(logits, testing::ExpectedTensor("base/" + std::to_string(p))), 1e-4f) << p;
  }
  EXPECT_EQ(out[6]["id"], 99);
  EXPECT_FALSE(out[6].contains("last_logits"));
  EXPECT_EQ(out[6]["token_ids"].size(), 2u);
}

TEST(BatchTest, BadLineFailsBeforeAnyOutput) {
  testing::TempDir dir;
  testing::WriteFileOrDie(dir.Join("in.jsonl"),
                          "{\"id\":1,\"prompt\":\"ok\"}\n{\"id\":2,\"prompt\":\"x\",\"top_p\":0}\n");
  auto r = RunCommand({BinaryPath("server/tessera-batch"), "--model", testing::TinyLlamaModelDir(), "--input",
                       dir.Join("in.jsonl"), "--output", dir.Join("out.jsonl")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("in.jsonl:2: top_p must be in (0, 1]"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir.Join("out.jsonl")));

  testing::WriteFileOrDie(dir.Join("in.jsonl"), "{\"id\":1,\"prompt\":\"ok\",\"tempreature\":1}\n");
  r = RunCommand({BinaryPath("server/tessera-batch"), "--model", testing::TinyLlamaModelDir(), "--input",
                  dir.Join("in.jsonl"), "--output", dir.Join("out.jsonl")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("in.jsonl:1: unknown field 'tempreature'"), std::string::npos) << r.output;

  testing::WriteFileOrDie(dir.Join("in.jsonl"), "{\"id\":1,\"prompt\":\"ok\"\n");
  r = RunCommand({BinaryPath("server/tessera-batch"), "--model", testing::TinyLlamaModelDir(), "--input",
                  dir.Join("in.jsonl"), "--output", dir.Join("out.jsonl")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("in.jsonl:1: not valid JSON"), std::string::npos) << r.output;

  // Numbers go through checked conversions: a float out of range is an
  // error for its line, not undefined behaviour.
  testing::WriteFileOrDie(dir.Join("in.jsonl"), "{\"id\":1,\"prompt\":\"ok\",\"max_new_tokens\":1e300}\n");
  r = RunCommand({BinaryPath("server/tessera-batch"), "--model", testing::TinyLlamaModelDir(), "--input",
                  dir.Join("in.jsonl"), "--output", dir.Join("out.jsonl")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("in.jsonl:1: 'max_new_tokens' must be an integer in [0, 2147483647], got 1e+300"), std::string::npos) << r.output;
  testing::WriteFileOrDie(dir.Join("in.jsonl"), "{\"id\":1,\"prompt_ids\":[1, 2.5]}\n");
  r = RunCommand({BinaryPath("server/tessera-batch"), "--model", testing::TinyLlamaModelDir(), "--input",
                  dir.Join("in.jsonl"), "--output", dir.Join("out.jsonl")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("in.jsonl:1: 'prompt_ids entry' must be an integer"), std::string::npos) << r.output;
}

TEST(BatchTest, AdaptersPerLine) {
  testing::TempDir dir;
  {
    std::ofstream in(dir.Join("in.jsonl"));
    int n = 0;
    for (const char* a : {"lora", "road", "diablo", "seal", "lora2"}) {
      for (int p : {0, 4}) {
        in << json({{"id", n++},
                    {"prompt_ids", PromptIds(p)},
                    {"adapter", a},
                    {"max_new_tokens", 16},
                    {"ignore_eos", true}})
                  .dump()
           << "\n";
      }
    }
    in << json({{"id", n}, {"prompt_ids", PromptIds(1)}, {"max_new_tokens", 16}, {"ignore_eos", true}}).dump()
       << "\n";
  }
  std::vector<std::string> argv = {BinaryPath("server/tessera-batch"),
                                   "--model",
                                   testing::TinyLlamaModelDir(),
                                   "--input",
                                   dir.Join("in.jsonl"),
                                   "--output",
                                   dir.Join("out.jsonl"),
                                   "--quantize",
                                   "none"};
  for (const char* a : {"lora", "road", "diablo", "seal", "lora2"}) {
    argv.push_back("--adapter");
    argv.push_back(std::string(a) + "=" + testing::TinyLlamaDir() + "/adapters/" + a);
  }
  auto r = RunCommand(argv);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::vector<json> out = ReadJsonLines(dir.Join("out.jsonl"));
  ASSERT_EQ(out.size(), 11u);
  int n = 0;
  for (const char* a : {"lora", "road", "diablo", "seal", "lora2"}) {
    for (int p : {0, 4})
      EXPECT_EQ(out[n++]["token_ids"].get<std::vector<int32_t>>(), Greedy(a, p)) << a << " " << p;
  }
  EXPECT_EQ(out[10]["token_ids"].get<std::vector<int32_t>>(), Greedy("base", 1));

  // A bad adapter stops the batch before any work; an unknown one names its line.
  argv.push_back("--adapter=nope=" + dir.Join("missing"));
  r = RunCommand(argv);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("adapter 'nope': folder"), std::string::npos) << r.output;
  argv.pop_back();
  testing::WriteFileOrDie(dir.Join("in.jsonl"), "{\"prompt\": \"hi\", \"adapter\": \"lora9\"}\n");
  r = RunCommand(argv);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("in.jsonl:1: adapter 'lora9' is not loaded"), std::string::npos) << r.output;
}

TEST(LongContextTest, RopeIdRequestBeyondTheTrainingLengthThroughTheBatchTool) {
  testing::TempDir dir;
  const auto& long_case = testing::Expected()["rope_id"]["long"];
  testing::WriteFileOrDie(dir.Join("in.jsonl"), json({{"id", "long"},
                                                      {"prompt_ids", long_case["ids"]},
                                                      {"max_new_tokens", 16},
                                                      {"ignore_eos", true},
                                                      {"return_logits", "last"}})
                                                        .dump() +
                                                    "\n");
  // A small step budget: the 598-token prompt is prefilled in 5 chunks.
  auto r = RunCommand({BinaryPath("server/tessera-batch"), "--model",
                       testing::TinyLlamaDir() + "/model-ropeid", "--input", dir.Join("in.jsonl"), "--output",
                       dir.Join("out.jsonl"), "--quantize", "none", "--max-step-tokens", "128"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::vector<json> out = ReadJsonLines(dir.Join("out.jsonl"));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0]["token_ids"], long_case["greedy"]);
  EXPECT_LE(testing::MaxAbsDiff(out[0]["last_logits"].get<std::vector<float>>(),
                                testing::ExpectedTensor("ropeid_long/0")),
            1e-4f);
}

// A 32k-token prompt on the tiny RoPE-ID model completes with peak RSS within
// 20% of KV bytes + model + a fixed overhead of 16 MiB (the process with its
// libraries, the tokenizer and the activations of one 512-token chunk).
TEST(LongContextTest, ThirtyTwoThousandTokenPromptMemory) {
  testing::TempDir dir;
  std::vector<int32_t> ids(32768);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = 4 + static_cast<int32_t>((i * 2654435761u) % 508);
  testing::WriteFileOrDie(
      dir.Join("in.jsonl"),
      json({{"prompt_ids", ids}, {"max_new_tokens", 4}, {"ignore_eos", true}}).dump() + "\n");
  const int64_t context = 32768 + 4;
  auto r =
      RunCommand({BinaryPath("server/tessera-batch"), "--model", testing::TinyLlamaDir() + "/model-ropeid",
                  "--input", dir.Join("in.jsonl"), "--output", dir.Join("out.jsonl"), "--quantize", "none",
                  "--max-batch-size", "1", "--max-context", std::to_string(context)},
                 absl::Seconds(300));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::vector<json> out = ReadJsonLines(dir.Join("out.jsonl"));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0]["usage"]["prompt_tokens"], 32768);
  EXPECT_EQ(out[0]["token_ids"].size(), 4u);
  const size_t at = r.output.find("peak RSS ");
  ASSERT_NE(at, std::string::npos) << r.output;
  double peak_mib = 0;
  const std::string number = r.output.substr(at + 9, r.output.find(' ', at + 9) - at - 9);
  ASSERT_TRUE(absl::SimpleAtod(number, &peak_mib)) << r.output;
  // KV: blocks of 16 tokens x 2 layers x (K, V) x 2 kv heads x 16 dims x fp32.
  const double kv_mib = ((context + 15) / 16 * 16) * 2.0 * 2 * 2 * 16 * 4 / 1048576.0;
  const double model_mib = 634216 / 1048576.0;
  const double expected = kv_mib + model_mib + 16.0;
  RecordProperty("peak_rss_mib", std::to_string(peak_mib));
  RecordProperty("kv_mib", std::to_string(kv_mib));
  EXPECT_LE(peak_mib, 1.2 * expected) << "kv " << kv_mib << " MiB";
  EXPECT_GE(peak_mib, kv_mib);  // the cache really is resident
}

TEST(QuantizeToolTest, PrequantizedCheckpointServesTheQuantizedReference) {
  testing::TempDir dir;
  const std::string out = dir.Join("tiny-int4");
  auto q = RunCommand({BinaryPath("server/tessera-quantize"), "--model", testing::TinyLlamaModelDir(),
                       "--output", out, "--quantize", "int4", "--quant-group-size", "32"});
  ASSERT_EQ(q.exit_code, 0) << q.output;
  auto again = RunCommand(
      {BinaryPath("server/tessera-quantize"), "--model", testing::TinyLlamaModelDir(), "--output", out});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.output.find("already exists"), std::string::npos) << again.output;

  {
    std::ofstream in(dir.Join("in.jsonl"));
    for (int p = 0; p < 6; ++p) {
      in << json({{"id", p}, {"prompt_ids", PromptIds(p)}, {"max_new_tokens", 16}, {"ignore_eos", true}})
                .dump()
         << "\n";
    }
  }
  auto r = RunCommand({BinaryPath("server/tessera-batch"), "--model", out, "--input", dir.Join("in.jsonl"),
                       "--output", dir.Join("out.jsonl"), "--quantize", "int4", "--quant-group-size", "32"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::vector<json> lines = ReadJsonLines(dir.Join("out.jsonl"));
  ASSERT_EQ(lines.size(), 6u);
  for (int p = 0; p < 6; ++p)
    EXPECT_EQ(lines[p]["token_ids"].get<std::vector<int32_t>>(), Greedy("quant_int4", p));

  // The default --quant-group-size (128) does not match: a clear error.
  r = RunCommand({BinaryPath("server/tessera-batch"), "--model", out, "--input", dir.Join("in.jsonl"),
                  "--output", dir.Join("out2.jsonl")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("pass --quantize int4 --quant-group-size 32"), std::string::npos) << r.output;
}

TEST(BatchTest, SentencePieceModelTokenizesAsHfTokenizers) {
  // Random weights of a small shape with Llama-2's vocabulary and tokenizer.
  testing::TempDir dir;
  const std::string model = dir.Join("sp-model");
  const std::string tok = std::string(TESSERA_FIXTURES_DIR) + "/tokenizers/llama2";
  auto g = RunCommand({BinaryPath("bench/tessera-genmodel"), "--output", model, "--hidden", "64", "--intermediate",
                       "128", "--layers", "1", "--heads", "4", "--kv_heads", "2", "--vocab", "32000",
                       "--max_position", "256", "--tokenizer_from", tok});
  ASSERT_EQ(g.exit_code, 0) << g.output;
  const json expected = json::parse(testing::ReadFileOrDie(tok + "/expected.json"));
  std::vector<json> cases;
  for (const json& c : expected["cases"]) {
    const std::string text = c["text"];
    if (text == "Hello world" || text == "Tiếng Việt có dấu" || text == "emoji🙂inside") cases.push_back(c);
  }
  ASSERT_EQ(cases.size(), 3u);
  {
    std::ofstream in(dir.Join("in.jsonl"));
    for (size_t i = 0; i < cases.size(); ++i) {
      in << json({{"id", i}, {"prompt", cases[i]["text"]}, {"max_new_tokens", 2}}).dump() << "\n";
    }
  }
  auto r = RunCommand({BinaryPath("server/tessera-batch"), "--model", model, "--input", dir.Join("in.jsonl"),
                       "--output", dir.Join("out.jsonl")});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::vector<json> out = ReadJsonLines(dir.Join("out.jsonl"));
  ASSERT_EQ(out.size(), cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    EXPECT_EQ(out[i]["usage"]["prompt_tokens"], cases[i]["ids"].size()) << cases[i]["text"];
    EXPECT_EQ(out[i]["token_ids"].size(), 2u);
  }
}

TEST(TokenizeToolTest, WritesHfIdsPerLineAndAnErrorForABadLine) {
  for (const std::string name : {"llama2", "llama3"}) {
    const std::string tok = std::string(TESSERA_FIXTURES_DIR) + "/tokenizers/" + name;
    const json expected = json::parse(testing::ReadFileOrDie(tok + "/expected.json"));
    testing::TempDir dir;
    std::vector<json> cases;
    {
      std::ofstream in(dir.Join("in.jsonl"));
      for (size_t i = 0; i < expected["cases"].size(); i += 20) {
        cases.push_back(expected["cases"][i]);
        in << json({{"text", cases.back()["text"]}}).dump() << "\n";
      }
      in << "{\"text\": 5}\n";
      in << json({{"ids", cases[0]["ids"]}}).dump() << "\n";
    }
    auto r = RunCommand({"/bin/sh", "-c",
                         BinaryPath("server/tessera-tokenize") + " --tokenizer " + tok +
                             " --add-special-tokens --decode --skip-special-tokens < " + dir.Join("in.jsonl") + " > " +
                             dir.Join("out.jsonl")});
    ASSERT_EQ(r.exit_code, 0) << r.output;
    std::vector<json> out = ReadJsonLines(dir.Join("out.jsonl"));
    ASSERT_EQ(out.size(), cases.size() + 2) << name;
    for (size_t i = 0; i < cases.size(); ++i) {
      EXPECT_EQ(out[i]["ids"], cases[i]["ids"]) << name << ": " << cases[i]["text"];
      EXPECT_EQ(out[i]["decoded"], cases[i]["decoded_skip_special"]) << name << ": " << cases[i]["text"];
    }
    EXPECT_NE(out[cases.size()]["error"].get<std::string>().find("expected {\"text\""), std::string::npos);
    EXPECT_EQ(out[cases.size() + 1]["text"], cases[0]["decoded_skip_special"]);
  }
}

}  // namespace
}  // namespace tessera
