// ChatTemplate: a model's chat template, found where transformers looks for
// it (chat_template.jinja in the model folder, else tokenizer_config.json's
// "chat_template": a string, or a list of {name, template} of which
// "default" is used), with the bos_token and eos_token strings that
// templates read. Rendered by the Jinja subset in model/jinja.h as
// transformers' apply_chat_template does; the result is tokenized without
// adding special tokens (the template writes them).
//
// Thread safety: immutable after loading; Render may run on any thread.
#ifndef TESSERA_MODEL_CHAT_TEMPLATE_H_
#define TESSERA_MODEL_CHAT_TEMPLATE_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "model/jinja.h"
#include "nlohmann/json.hpp"

namespace tessera {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant", "tool", ...
  std::string content;
};

class ChatTemplate {
 public:
  // nullopt when the folder has no template. InvalidArgument, naming the
  // file and line, when the template does not parse.
  static absl::StatusOr<std::optional<ChatTemplate>> FromDir(const std::string& dir);
  static absl::StatusOr<ChatTemplate> FromSource(absl::string_view source, std::string bos_token,
                                                 std::string eos_token);

  // The prompt for `messages`, ending with the assistant's turn opener when
  // add_generation_prompt. InvalidArgument when the template refuses the
  // conversation (raise_exception: the message says what it wants) or fails.
  absl::StatusOr<std::string> Render(absl::Span<const ChatMessage> messages, bool add_generation_prompt) const;
  // Renders with `context` as the variables (messages, tools, ...);
  // bos_token and eos_token are added unless given.
  absl::StatusOr<std::string> RenderContext(nlohmann::ordered_json context) const;

  const std::string& bos_token() const { return bos_; }
  const std::string& eos_token() const { return eos_; }

 private:
  ChatTemplate(jinja::Template t, std::string bos, std::string eos)
      : template_(std::move(t)), bos_(std::move(bos)), eos_(std::move(eos)) {}
  jinja::Template template_;
  std::string bos_, eos_;
};

}  // namespace tessera

#endif  // TESSERA_MODEL_CHAT_TEMPLATE_H_
