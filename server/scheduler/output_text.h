// Turns a request's generated tokens into released text: streaming UTF-8
// decoding, special tokens dropped, and stop strings matched across token
// boundaries. Text that could still become the start of a stop string is held
// back until it cannot.
//
// Thread safety: none; one instance per request.
#ifndef TESSERA_SERVER_SCHEDULER_OUTPUT_TEXT_H_
#define TESSERA_SERVER_SCHEDULER_OUTPUT_TEXT_H_

#include <string>
#include <vector>

#include "model/tokenizer.h"
#include "model/utf8.h"

namespace tessera {

class OutputText {
 public:
  OutputText(const Tokenizer& tokenizer, std::vector<std::string> stop_strings);

  // Adds one token; returns the text released by it.
  std::string Append(int32_t token_id);
  // Releases everything still held (generation ended for another reason).
  std::string Flush();
  // True once a stop string matched; the text before it has been released.
  bool stopped() const { return stopped_; }

 private:
  std::string Release();

  const Tokenizer& tokenizer_;
  std::vector<std::string> stop_strings_;
  Utf8StreamDecoder decoder_;
  std::string held_;
  // Bytes the latest token decodes to only if another follows (a BPEDecoder's
  // suffix as a space); dropped when generation ends, as HF's decode does.
  std::string not_last_tail_;
  bool stopped_ = false;
  bool started_ = false;    // some text has been decoded
  bool any_token_ = false;  // a token that is not skipped has been decoded
};

}  // namespace tessera

#endif  // TESSERA_SERVER_SCHEDULER_OUTPUT_TEXT_H_
