// tessera-tokenize: Tessera's tokenizer on the command line, so anyone can
// compare it with another tokenizer. Reads JSON lines on stdin and writes one
// JSON line per input line on stdout:
//   {"text": "..."}   ->  {"ids": [...]}            (+ "decoded" with --decode)
//   {"ids": [...]}    ->  {"text": "..."}
//   anything else     ->  {"error": "..."}          (and the next line is read)
//
//   tessera-tokenize --tokenizer DIR [--add-special-tokens] [--decode] [--skip-special-tokens]
#include <cstdio>
#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/flags.h"
#include "common/json_util.h"
#include "model/tokenizer.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, tokenizer, "", "folder with tokenizer.json (and tokenizer_config.json)");
ABSL_FLAG(bool, add_special_tokens, false, "encode with the tokenizer's special tokens (BOS, ...)");
ABSL_FLAG(bool, decode, false, "with each encoding, also print the ids decoded back (\"decoded\")");
ABSL_FLAG(bool, skip_special_tokens, false, "leave special tokens out of decoded text");

namespace tessera {
namespace {

constexpr size_t kMaxLineBytes = 64 << 20;

nlohmann::json Process(const Tokenizer& tok, const std::string& line) {
  absl::StatusOr<nlohmann::json> in = ParseJson(line, "input line", kMaxLineBytes);
  if (!in.ok()) return {{"error", std::string(in.status().message())}};
  const bool skip = absl::GetFlag(FLAGS_skip_special_tokens);
  if (in->is_object() && in->contains("text") && (*in)["text"].is_string()) {
    absl::StatusOr<std::vector<int32_t>> ids =
        tok.Encode((*in)["text"].get<std::string>(), absl::GetFlag(FLAGS_add_special_tokens));
    if (!ids.ok()) return {{"error", std::string(ids.status().message())}};
    nlohmann::json out = {{"ids", *ids}};
    if (absl::GetFlag(FLAGS_decode)) out["decoded"] = tok.Decode(*ids, skip);
    return out;
  }
  if (in->is_object() && in->contains("ids") && (*in)["ids"].is_array()) {
    std::vector<int32_t> ids;
    for (const nlohmann::json& v : (*in)["ids"]) {
      absl::StatusOr<int64_t> id = JsonInt(v, "id", 0, tok.vocab_size() - 1);
      if (!id.ok()) return {{"error", std::string(id.status().message())}};
      ids.push_back(static_cast<int32_t>(*id));
    }
    return {{"text", tok.Decode(ids, skip)}};
  }
  return {{"error", "expected {\"text\": \"...\"} or {\"ids\": [...]}"}};
}

int Run() {
  const std::string dir = absl::GetFlag(FLAGS_tokenizer);
  if (dir.empty()) {
    std::fprintf(stderr, "tessera-tokenize: --tokenizer DIR is required\n");
    return 2;
  }
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = Tokenizer::FromDir(dir);
  if (!tok.ok()) {
    std::fprintf(stderr, "tessera-tokenize: %s\n", std::string(tok.status().message()).c_str());
    return 1;
  }
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.empty()) continue;
    // Invalid UTF-8 in the output would make a line unreadable: replaced.
    std::cout << Process(**tok, line).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  }
  std::cout.flush();
  return 0;
}

}  // namespace
}  // namespace tessera

int main(int argc, char** argv) {
  tessera::ParseFlagsWithoutArguments(argc, argv,
                                      "tessera-tokenize --tokenizer DIR [--add-special-tokens] [--decode] < in.jsonl");
  return tessera::Run();
}
