// HF tokenizer.json BPE with the special-token settings of
// tokenizer_config.json, in three families:
//   byte-level (GPT-2, Llama-3): pre-tokenizers ByteLevel / Split (Regex or
//     String, any behaviour) / Digits / Punctuation / Whitespace(Split) /
//     Sequence, decoder ByteLevel;
//   SentencePiece-style (Llama-2, Mistral-7B): normalizers Prepend / Replace
//     (String patterns) / Sequence, or a Metaspace pre-tokenizer,
//     byte_fallback (<0xNN> tokens) and fuse_unk, decoders Replace /
//     ByteFallback / Fuse / Strip / Metaspace / Sequence;
//   subword-marked BPE: continuing_subword_prefix / end_of_word_suffix with
//     a WordPiece or BPEDecoder decoder.
// Any family may normalize with NFC, NFD, NFKC, NFKD (utf8proc), Lowercase
// or Strip. Merges are "a b" strings or [a, b] pairs, honoured or skipped for
// whole vocabulary pieces (ignore_merges); added tokens are split out in the
// raw and then the normalized text (lstrip, rstrip, single_word,
// normalized). Other components are refused by FromDir with a message naming
// the component's JSON path.
//
// Thread safety: immutable after construction; Encode and Decode may be called
// from any thread.
#ifndef TESSERA_MODEL_TOKENIZER_H_
#define TESSERA_MODEL_TOKENIZER_H_

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace tessera {

class Tokenizer {
 public:
  // Reads DIR/tokenizer.json and, when present, DIR/tokenizer_config.json.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromDir(const std::string& dir);
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromJson(std::string_view tokenizer_json,
                                                             std::string_view config_json,
                                                             const std::string& source);
  ~Tokenizer();

  // Text to ids. Added tokens written in the text map to their ids. BOS is
  // prepended when the tokenizer config asks for it and add_special is true.
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text, bool add_special = true) const;

  // Raw bytes of one token: the byte-level decoding of a vocabulary token, or
  // an added token's content (empty for special tokens when skip_special).
  // These bytes need not be valid UTF-8 on their own. first: the token is the
  // first one decoded (a Metaspace decoder drops its replacements instead of
  // turning them into spaces; a WordPiece decoder keeps its prefix and adds no
  // space). last: the token is the last one decoded (a BPEDecoder turns its
  // suffix into nothing instead of a space; see decodes_last_differently()).
  std::string TokenBytes(int32_t id, bool skip_special, bool first = false, bool last = false) const;

  // Whole-sequence decode; ill-formed UTF-8 becomes U+FFFD.
  std::string Decode(const std::vector<int32_t>& ids, bool skip_special) const;

  int32_t vocab_size() const { return vocab_size_; }
  bool IsSpecial(int32_t id) const;
  std::optional<int32_t> bos_id() const { return bos_id_; }
  std::optional<int32_t> eos_id() const { return eos_id_; }
  bool add_bos() const { return add_bos_; }
  std::optional<int32_t> TokenToId(std::string_view token) const;
  // Spaces the decoder strips from the start of a whole decode (the
  // SentencePiece family's Strip decoder): 0 or 1.
  int strip_leading_spaces() const { return strip_leading_; }
  // TokenBytes depends on `last` (a BPEDecoder): a stream holds back what a
  // token would lose as the last one until the next token arrives.
  bool decodes_last_differently() const { return !bpe_decoder_suffix_.empty(); }
  // The longest token's text in bytes (byte-level tokens count their UTF-8
  // form, an upper bound on the bytes they cover).
  size_t max_token_bytes() const { return max_token_bytes_; }
  // A lower bound on the tokens of any text of `bytes` bytes, so a prompt can
  // be checked against a token limit before encoding: ceil(bytes /
  // max_token_bytes()), or 0 when a pre-tokenizer removes text.
  int64_t MinTokensForBytes(int64_t bytes) const {
    if (drops_text_) return 0;
    const int64_t per = static_cast<int64_t>(max_token_bytes_);
    return (bytes + per - 1) / per;
  }

 private:
  struct PreTokenizerStep;
  struct AddedToken {
    int32_t id;
    std::string content;
    bool special;
    bool lstrip = false;       // the match takes the whitespace before it
    bool rstrip = false;       // ... and after it
    bool single_word = false;  // no match inside a word
    bool normalized = false;   // matched in the normalized text, as `match`
    std::string match;         // what is searched for: content, normalized when `normalized`
  };
  // Splits `text` on the added tokens with normalized == `normalized`, as
  // HF's AddedVocabulary does (leftmost-longest, non-overlapping): token ids
  // go to *ids, the text between them to on_text(piece, offset in text).
  absl::Status SplitOnAdded(std::string_view text, bool normalized,
                            const std::function<absl::Status(std::string_view, size_t)>& on_text,
                            std::vector<int32_t>* ids) const;

  Tokenizer() = default;
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Parse(std::string_view tokenizer_json,
                                                          std::string_view config_json, const std::string& source);
  // at_input_start: text begins the input (no added token before it).
  absl::Status EncodeSegment(std::string_view text, bool at_input_start, std::vector<int32_t>* ids) const;
  absl::Status PreTokenize(std::string_view text, bool at_input_start, std::vector<std::string>* pieces) const;
  absl::Status Bpe(const std::string& piece, std::vector<int32_t>* ids) const;
  // The vocabulary id of a final BPE symbol: itself, else its <0xNN> bytes
  // (byte_fallback), else unk (fused with a preceding unk under fuse_unk).
  absl::Status EmitSymbol(const std::string& s, std::vector<int32_t>* ids) const;

  std::unordered_map<std::string, int32_t> vocab_;
  std::vector<std::string> id_to_token_;  // vocabulary token strings by id
  std::unordered_map<std::string, int32_t> merge_ranks_;
  std::vector<AddedToken> added_;
  std::unordered_map<int32_t, size_t> added_by_id_;
  std::vector<std::unique_ptr<PreTokenizerStep>> pre_steps_;
  std::optional<int32_t> unk_id_;
  std::optional<int32_t> bos_id_;
  std::optional<int32_t> eos_id_;
  bool add_bos_ = false;
  // Added around the ids when encoding with special tokens.
  std::vector<int32_t> prefix_ids_, suffix_ids_;
  int32_t vocab_size_ = 0;
  std::array<bool, 256> added_first_byte_[2] = {};  // [normalized]: some added token's match starts with this byte
  size_t max_token_bytes_ = 1;
  bool drops_text_ = false;  // a Split pre-tokenizer with behavior Removed
  bool ignore_merges_ = false;  // a piece in the vocabulary is never split (Llama-3)

  // SentencePiece family (byte_level_ false).
  bool byte_level_ = true;
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
  struct NormalizeOp {
    enum class Kind { kPrepend, kReplace, kNfc, kNfd, kNfkc, kNfkd, kLowercase, kStrip } kind;
    std::string pattern, content;  // kPrepend: content; kReplace: pattern -> content
    bool left = false, right = false;  // kStrip: which ends lose their whitespace
  };
  // Applies normalize_ to one segment between added tokens.
  absl::StatusOr<std::string> Normalize(std::string_view text) const;
  std::vector<NormalizeOp> normalize_;                               // in order
  std::vector<std::pair<std::string, std::string>> decode_replace_;  // Replace decoders, in order
  bool decode_byte_fallback_ = false;
  std::string metaspace_first_drop_;  // a Metaspace decoder's replacement, dropped in the first token
  int strip_leading_ = 0;
  std::optional<std::string> wordpiece_prefix_;  // a WordPiece decoder
  bool wordpiece_cleanup_ = true;
  std::string bpe_decoder_suffix_;  // a BPEDecoder: its suffix becomes a space, or nothing in the last token
  // BPE subword markers: every character but a word's first starts as
  // subword_prefix_ + c, the last one as c + word_suffix_.
  std::string subword_prefix_, word_suffix_;
};

}  // namespace tessera

#endif  // TESSERA_MODEL_TOKENIZER_H_
