#!/usr/bin/env python3
"""Writes the tokenizer.json (and tokenizer_config.json) of a variant fixture
(tests/fixtures/tokenizers/NAME/variant.json: a base fixture with some
pipeline stages replaced) to OUT_DIR, for generate.js to run HF tokenizers on:

  tools/tokenizer-parity/make_variant.py NAME OUT_DIR
  NODE_PATH=... node tools/tokenizer-parity/generate.js NAME OUT_DIR/tokenizer.json \\
      > tests/fixtures/tokenizers/NAME/expected.json
"""
import json
import os
import shutil
import sys

name, out = sys.argv[1:3]
fixtures = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "tokenizers")
variant = json.load(open(os.path.join(fixtures, name, "variant.json"), encoding="utf-8"))
base = os.path.join(fixtures, variant["base"])
tokenizer = json.load(open(os.path.join(base, "tokenizer.json"), encoding="utf-8"))
tokenizer.update(variant["override"])
os.makedirs(out, exist_ok=True)
json.dump(tokenizer, open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8"), ensure_ascii=False)
shutil.copy(os.path.join(base, "tokenizer_config.json"), out)
