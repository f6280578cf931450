// UTF-8 validation with replacement, whole-buffer and streaming.
//
// Invalid input becomes U+FFFD, one per maximal ill-formed subpart (the
// Unicode "best practice" that Python's bytes.decode(errors="replace") and
// HF tokenizers follow), so streamed text equals the whole-buffer decode.
#ifndef TESSERA_MODEL_UTF8_H_
#define TESSERA_MODEL_UTF8_H_

#include <string>
#include <string_view>

namespace tessera {

// Replaces every ill-formed subpart of bytes by U+FFFD.
std::string Utf8Sanitize(std::string_view bytes);

// True when bytes is well-formed UTF-8.
bool IsValidUtf8(std::string_view bytes);

// Appends the UTF-8 encoding of code point cp.
void AppendUtf8(char32_t cp, std::string* out);

// Accepts bytes in arbitrary pieces and releases only complete, well-formed
// text; an incomplete trailing sequence waits for the next Push.
// Thread safety: none; one instance per stream.
class Utf8StreamDecoder {
 public:
  // Returns the text that became final with these bytes.
  std::string Push(std::string_view bytes);
  // Flushes what is pending (an incomplete sequence becomes U+FFFD).
  std::string Finish();

 private:
  std::string pending_;
};

}  // namespace tessera

#endif  // TESSERA_MODEL_UTF8_H_
