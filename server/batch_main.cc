// tessera-batch: offline, in-process batch inference with no server.
//
//   tessera-batch --model DIR --input in.jsonl --output out.jsonl
//
// Input lines: {"id", "prompt" | "prompt_ids", "max_new_tokens", "temperature",
// "top_k", "top_p", "seed", "stop", "stop_token_ids", "ignore_eos", "adapter",
// "return_logits": "last"}. Output lines, in input order: {"id", "token_ids",
// "text", "finish_reason", "usage", "last_logits" (when asked)}. Every input
// line is validated before any generation starts; the output file appears only
// when every line succeeded (written to a temporary name, then renamed).
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <limits>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/flags.h"
#include "common/json_util.h"
#include "common/process_memory.h"
#include "nlohmann/json.hpp"
#include "server/serving/serving_flags.h"
#include "spdlog/spdlog.h"

ABSL_FLAG(std::string, input, "", "input JSONL file");
ABSL_FLAG(std::string, output, "", "output JSONL file (written atomically)");
ABSL_FLAG(std::string, log_level, "warn", "trace, debug, info, warn, error");

namespace tessera {
namespace {

using nlohmann::json;

struct Line {
  int number = 0;  // 1-based line in the input file
  json id;
  GenerationParams params;
};

absl::Status ParseLine(const json& j, const Tokenizer& tokenizer, const GenerationDefaults& defaults, Line* line) {
  if (!j.is_object()) return absl::InvalidArgumentError("line is not a JSON object");
  static const char* kKnown[] = {"id",         "prompt",  "prompt_ids",   "max_new_tokens", "temperature",
                                 "top_k",      "top_p",   "seed",         "stop",           "stop_token_ids",
                                 "ignore_eos", "adapter", "return_logits"};
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (std::find_if(std::begin(kKnown), std::end(kKnown), [&](const char* k) { return it.key() == k; }) ==
        std::end(kKnown)) {
      return absl::InvalidArgumentError(absl::StrCat("unknown field '", it.key(), "'"));
    }
  }
  line->id = j.value("id", json());
  GenerationParams& p = line->params;
  try {
    if (j.contains("prompt") == j.contains("prompt_ids")) {
      return absl::InvalidArgumentError("give exactly one of 'prompt' (text) or 'prompt_ids'");
    }
    if (j.contains("prompt")) {
      const std::string text = j["prompt"].get<std::string>();
      // Before encoding: a tokenizer that adds BOS would turn "" into one token.
      if (text.empty())
        return absl::InvalidArgumentError("prompt is empty: send prompt text or at least one token id");
      absl::StatusOr<std::vector<int32_t>> ids = tokenizer.Encode(text);
      if (!ids.ok()) return ids.status();
      p.prompt_ids = *std::move(ids);
    } else {
      if (!j["prompt_ids"].is_array()) return absl::InvalidArgumentError("'prompt_ids' must be a list of token ids");
      for (const json& id : j["prompt_ids"]) {
        absl::StatusOr<int64_t> v = JsonInt(id, "prompt_ids entry", 0, std::numeric_limits<int32_t>::max());
        if (!v.ok()) return v.status();
        p.prompt_ids.push_back(static_cast<int32_t>(*v));
      }
    }
    // Checked conversions (a float out of range is undefined behaviour in
    // nlohmann's get<int>()).
    absl::StatusOr<int64_t> max_new = JsonIntField(j, "max_new_tokens", 16, 0, std::numeric_limits<int32_t>::max());
    if (!max_new.ok()) return max_new.status();
    p.max_new_tokens = static_cast<int32_t>(*max_new);
    absl::StatusOr<int64_t> top_k = JsonIntField(j, "top_k", defaults.top_k, 0, std::numeric_limits<int32_t>::max());
    if (!top_k.ok()) return top_k.status();
    p.top_k = static_cast<int32_t>(*top_k);
    p.temperature = j.value("temperature", defaults.temperature);
    p.top_p = j.value("top_p", defaults.top_p);
    if (j.contains("seed")) {
      if (!j["seed"].is_number_unsigned()) return absl::InvalidArgumentError("'seed' must be a non-negative integer");
      p.seed = j["seed"].get<uint64_t>();
    }
    if (j.contains("stop")) p.stop_strings = j["stop"].get<std::vector<std::string>>();
    if (j.contains("stop_token_ids")) p.stop_token_ids = j["stop_token_ids"].get<std::vector<int32_t>>();
    p.ignore_eos = j.value("ignore_eos", false);
    p.adapter_id = j.value("adapter", "");
    if (j.contains("return_logits")) {
      if (j["return_logits"] != "last") {
        return absl::InvalidArgumentError("return_logits must be \"last\" (the only supported value)");
      }
      p.return_prompt_logits = true;
    }
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("a field has the wrong type: ", e.what()));
  }
  return absl::OkStatus();
}

int Fail(const std::string& msg) {
  std::fprintf(stderr, "tessera-batch: %s\n", msg.c_str());
  return 1;
}

int Run() {
  spdlog::set_level(spdlog::level::from_str(absl::GetFlag(FLAGS_log_level)));
  const std::string input = absl::GetFlag(FLAGS_input), output = absl::GetFlag(FLAGS_output);
  if (input.empty() || output.empty()) return Fail("--input and --output are required (see --help)");
  std::ifstream in(input);
  if (!in) return Fail(absl::StrCat("cannot open input ", input));

  absl::StatusOr<ServingOptions> so = ServingOptionsFromFlags();
  if (!so.ok()) return Fail(std::string(so.status().message()));
  so->max_queue = std::numeric_limits<int32_t>::max();  // every line is queued up front
  so->fail_on_bad_adapter = true;                       // nothing has run yet: stop here
  absl::StatusOr<std::unique_ptr<ServingStack>> stack = BuildServingStack(*so);
  if (!stack.ok()) return Fail(absl::StrCat("cannot load the model: ", stack.status().message()));
  Scheduler& scheduler = *(*stack)->scheduler;

  // Parse everything first: a bad line fails the run before any work.
  std::vector<Line> lines;
  std::string text;
  for (int number = 1; std::getline(in, text); ++number) {
    if (text.find_first_not_of(" \t\r") == std::string::npos) continue;
    absl::StatusOr<json> parsed = ParseJson(text, absl::StrCat(input, ":", number), 64 << 20);
    if (!parsed.ok()) return Fail(std::string(parsed.status().message()));
    const json& j = *parsed;
    Line line;
    line.number = number;
    if (absl::Status s = ParseLine(j, *(*stack)->tokenizer, (*stack)->generation_defaults, &line); !s.ok()) {
      return Fail(absl::StrCat(input, ":", number, ": ", s.message()));
    }
    if (!line.params.adapter_id.empty()) {
      if (absl::Status known = (*stack)->startup_adapters->Resolve(line.params.adapter_id); !known.ok()) {
        return Fail(absl::StrCat(input, ":", number, ": ", known.message()));
      }
    }
    lines.push_back(std::move(line));
  }

  const absl::Time start = absl::Now();
  std::vector<std::future<GenerationResult>> results;
  std::atomic<int> done{0};
  std::vector<std::shared_ptr<RequestHandle>> handles;
  for (size_t i = 0; i < lines.size(); ++i) {
    auto promise = std::make_shared<std::promise<GenerationResult>>();
    results.push_back(promise->get_future());
    GenerationCallbacks cb;
    cb.on_finish = [promise, &done](GenerationResult r) {
      // Count first: once the last promise is set, Run() may return and
      // `done` goes out of scope while this callback would still use it.
      done.fetch_add(1);
      promise->set_value(std::move(r));
    };
    handles.push_back(scheduler.NewHandle());
    if (absl::Status s = scheduler.Submit(handles.back(), std::move(lines[i].params), std::move(cb));
        !s.ok()) {
      return Fail(absl::StrCat(input, ":", lines[i].number, ": ", s.message()));
    }
  }

  const std::string tmp = output + ".partial";
  std::ofstream out(tmp, std::ios::trunc);
  if (!out) return Fail(absl::StrCat("cannot write ", tmp));
  int64_t tokens = 0;
  for (size_t i = 0; i < results.size(); ++i) {
    while (results[i].wait_for(std::chrono::seconds(2)) != std::future_status::ready) {
      std::fprintf(stderr, "tessera-batch: %d/%zu done\n", done.load(), results.size());
    }
    GenerationResult r = results[i].get();
    if (!r.status.ok()) return Fail(absl::StrCat("request ", i + 1, " failed: ", r.status.message()));
    tokens += r.completion_tokens;
    nlohmann::ordered_json o = {
        {"id", lines[i].id},
        {"token_ids", r.token_ids},
        {"text", r.text},
        {"finish_reason", FinishReasonName(r.finish_reason)},
        {"usage", {{"prompt_tokens", r.prompt_tokens}, {"completion_tokens", r.completion_tokens}}}};
    if (!r.prompt_logits.empty()) o["last_logits"] = r.prompt_logits;
    out << o.dump() << "\n";
  }
  out.close();
  if (!out) return Fail(absl::StrCat("writing ", tmp, " failed"));
  std::error_code ec;
  std::filesystem::rename(tmp, output, ec);
  if (ec) return Fail(absl::StrCat("cannot rename ", tmp, " to ", output, ": ", ec.message()));
  const double secs = absl::ToDoubleSeconds(absl::Now() - start);
  std::fprintf(
      stderr, "tessera-batch: %zu requests, %lld tokens in %.2f s (%.1f tokens/s), peak RSS %.1f MiB -> %s\n",
      results.size(), static_cast<long long>(tokens), secs, secs > 0 ? tokens / secs : 0.0,
      PeakRssBytes() / 1048576.0, output.c_str());
  return 0;
}

}  // namespace
}  // namespace tessera

int main(int argc, char** argv) {
  tessera::ParseFlagsWithoutArguments(
      argc, argv,
      "Offline batch inference.\n  tessera-batch --model DIR --input in.jsonl --output out.jsonl");
  return tessera::Run();
}
