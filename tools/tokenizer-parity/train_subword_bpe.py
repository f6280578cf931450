#!/usr/bin/env python3
"""Trains a small BPE with subword markers and writes it as a tokenizer.json,
for parity fixtures of continuing_subword_prefix / end_of_word_suffix (no
LLM checkpoint on npm uses them). HF tokenizers is the oracle of what such a
file encodes to, not of how it was trained: generate.js runs it afterwards.

  tools/tokenizer-parity/train_subword_bpe.py suffix TEXT OUT_DIR   # end_of_word_suffix "</w>", BPEDecoder
  tools/tokenizer-parity/train_subword_bpe.py prefix TEXT OUT_DIR   # continuing_subword_prefix "##", WordPiece decoder

Training: words are runs of word characters or of other non-space
characters; every character but a word's first carries the prefix, the last
one the suffix; the most frequent adjacent pair merges next (ties: the
smallest pair), into a + b less b's prefix, as HF forms merged tokens.
Characters missing from TEXT stay out of the vocabulary and encode as unk.
"""
import collections
import json
import os
import re
import sys

MERGES = 1200


def words_of(text):
  return re.findall(r'\w+|[^\w\s]+', text)


def train(text, prefix, suffix):
  counts = collections.Counter(words_of(text))
  words = []
  for word, n in counts.items():
    symbols = [c if i == 0 else prefix + c for i, c in enumerate(word)]
    symbols[-1] += suffix
    words.append([symbols, n])
  alphabet = sorted({s for symbols, _ in words for s in symbols})
  merges, made = [], []
  for _ in range(MERGES):
    pairs = collections.Counter()
    for symbols, n in words:
      for a, b in zip(symbols, symbols[1:]):
        pairs[(a, b)] += n
    if not pairs:
      break
    best = max(pairs.items(), key=lambda kv: (kv[1], tuple(-ord(ch) for ch in kv[0][0] + '\0' + kv[0][1])))[0]
    a, b = best
    new = a + b[len(prefix):]
    merges.append([a, b])
    made.append(new)
    for entry in words:
      symbols, out, i = entry[0], [], 0
      while i < len(symbols):
        if i + 1 < len(symbols) and symbols[i] == a and symbols[i + 1] == b:
          out.append(new)
          i += 2
        else:
          out.append(symbols[i])
          i += 1
      entry[0] = out
  return alphabet, made, merges


def main():
  if len(sys.argv) != 4 or sys.argv[1] not in ('suffix', 'prefix'):
    sys.exit('usage: train_subword_bpe.py suffix|prefix TEXT OUT_DIR')
  kind, text_path, out = sys.argv[1:]
  text = open(text_path, encoding='utf-8').read()
  if kind == 'suffix':
    specials = ['<unk>', '<s>', '</s>']
    prefix, suffix = '', '</w>'
    text = text.lower()
    normalizer = {'type': 'Sequence', 'normalizers': [{'type': 'NFC'}, {'type': 'Lowercase'}]}
    pre_tokenizer = {'type': 'Whitespace'}
    decoder = {'type': 'BPEDecoder', 'suffix': suffix}
    fuse_unk = False
  else:
    specials = ['[UNK]', '[CLS]', '[SEP]']
    prefix, suffix = '##', ''
    normalizer = {'type': 'NFC'}
    pre_tokenizer = {'type': 'Sequence', 'pretokenizers': [
        {'type': 'WhitespaceSplit'}, {'type': 'Punctuation', 'behavior': 'Isolated'}]}
    decoder = {'type': 'WordPiece', 'prefix': prefix, 'cleanup': True}
    fuse_unk = True
  alphabet, made, merges = train(text, prefix, suffix)
  vocab = {}
  for token in specials + alphabet + made:
    vocab.setdefault(token, len(vocab))
  unk, bos, eos = specials
  tokenizer = {
      'version': '1.0', 'truncation': None, 'padding': None,
      'added_tokens': [{'id': i, 'content': s, 'single_word': False, 'lstrip': False, 'rstrip': False,
                        'normalized': False, 'special': True} for i, s in enumerate(specials)],
      'normalizer': normalizer,
      'pre_tokenizer': pre_tokenizer,
      'post_processor': {
          'type': 'TemplateProcessing',
          'single': [{'SpecialToken': {'id': bos, 'type_id': 0}}, {'Sequence': {'id': 'A', 'type_id': 0}},
                     {'SpecialToken': {'id': eos, 'type_id': 0}}],
          'pair': [{'SpecialToken': {'id': bos, 'type_id': 0}}, {'Sequence': {'id': 'A', 'type_id': 0}},
                   {'SpecialToken': {'id': eos, 'type_id': 0}}, {'Sequence': {'id': 'B', 'type_id': 1}},
                   {'SpecialToken': {'id': eos, 'type_id': 1}}],
          'special_tokens': {s: {'id': s, 'ids': [vocab[s]], 'tokens': [s]} for s in (bos, eos)}},
      'decoder': decoder,
      'model': {'type': 'BPE', 'dropout': None, 'unk_token': unk,
                'continuing_subword_prefix': prefix or None, 'end_of_word_suffix': suffix or None,
                'fuse_unk': fuse_unk, 'byte_fallback': False, 'ignore_merges': False,
                'vocab': vocab, 'merges': merges},
  }
  config = {'tokenizer_class': 'PreTrainedTokenizerFast', 'bos_token': bos, 'eos_token': eos, 'unk_token': unk,
            'clean_up_tokenization_spaces': False}
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, 'tokenizer.json'), 'w', encoding='utf-8') as f:
    json.dump(tokenizer, f, ensure_ascii=False, indent=1)
    f.write('\n')
  with open(os.path.join(out, 'tokenizer_config.json'), 'w', encoding='utf-8') as f:
    json.dump(config, f, indent=2)
    f.write('\n')
  print('%s: %d tokens, %d merges' % (out, len(vocab), len(merges)), file=sys.stderr)


if __name__ == '__main__':
  main()
