// A chat template (part 1) parsed and, when it parses, rendered with the
// messages of part 2 (a JSON list, as a chat request would bring them).
#include "common/json_util.h"
#include "model/chat_template.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessera;
  const auto parts = fuzz::SplitParts(data, size, 2);
  auto t = ChatTemplate::FromSource(absl::string_view(parts[0].data(), parts[0].size()), "<s>", "</s>");
  if (!t.ok()) return 0;
  nlohmann::ordered_json context;
  context["messages"] = nlohmann::ordered_json::array();
  if (ParseJson(parts[1], "messages", 1 << 16).ok()) {
    nlohmann::ordered_json messages = nlohmann::ordered_json::parse(parts[1], nullptr, false);
    if (!messages.is_discarded()) context["messages"] = std::move(messages);
  }
  context["add_generation_prompt"] = true;
  (void)t->RenderContext(std::move(context));
  return 0;
}
