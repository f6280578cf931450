#!/usr/bin/env python3
"""Rebuilds a SentencePiece-style tokenizer.json from a *-tokenizer-js npm package.

llama-tokenizer-js (Llama-1/2) and mistral-tokenizer-js (Mistral-7B), both MIT,
carry the vocabulary (tokens in id order, '\n' separated, base64) and the merges
(pairs of little-endian uint16 vocabulary ids in priority order, base64) that
they extracted from the model's own tokenizer.json. The pipeline around them
(normalizer, decoder, post-processor, added tokens) is the one transformers'
LlamaConverter writes with legacy=True, the same for Llama-2 and Mistral-7B-v0.1:
this script takes it from a template tokenizer.json and replaces only the
vocabulary and merges. Run by hand:

  npm pack llama-tokenizer-js && tar xzf llama-tokenizer-js-*.tgz
  tools/tokenizer-parity/sentencepiece_from_js.py package/llama-tokenizer.js \
      tests/fixtures/tokenizers/mistral_7b/tokenizer.json \
      > tests/fixtures/tokenizers/llama2/tokenizer.json
"""
import base64
import json
import re
import struct
import sys


def base64_constant(source, suffix):
  match = re.search(r'const \w*%s = "([A-Za-z0-9+/=]+)"' % suffix, source)
  if not match:
    sys.exit('no constant ending in %s' % suffix)
  return base64.b64decode(match.group(1))


def main():
  if len(sys.argv) != 3:
    sys.exit('usage: sentencepiece_from_js.py PACKAGE-tokenizer.js template/tokenizer.json')
  source = open(sys.argv[1], encoding='utf-8').read()
  template = json.load(open(sys.argv[2], encoding='utf-8'))

  tokens = base64_constant(source, 'vocab_base64').decode('utf-8').split('\n')
  if len(set(tokens)) != len(tokens):
    sys.exit('the vocabulary repeats tokens')
  packed = base64_constant(source, 'merges_binary')
  ids = struct.unpack('<%dH' % (len(packed) // 2), packed)
  merges = ['%s %s' % (tokens[ids[i]], tokens[ids[i + 1]]) for i in range(0, len(ids), 2)]

  for added in template['added_tokens']:
    if added['id'] >= len(tokens) or tokens[added['id']] != added['content']:
      sys.exit('added token %r is not id %d' % (added['content'], added['id']))
  template['model']['vocab'] = {token: i for i, token in enumerate(tokens)}
  template['model']['merges'] = merges
  json.dump(template, sys.stdout, ensure_ascii=False, indent=2)
  sys.stdout.write('\n')


if __name__ == '__main__':
  main()
