// Writes the expected ids and decodes of HF `tokenizers` (the official Node
// binding) for every corpus string, for one tokenizer.json. Run by hand:
//   npm install tokenizers   (once, anywhere; works offline afterwards)
//   NODE_PATH=.../node_modules node tools/tokenizer-parity/generate.js \
//       NAME path/to/tokenizer.json > tests/fixtures/tokenizers/NAME/expected.json
'use strict';
const fs = require('fs');
const path = require('path');
const { Tokenizer, templateProcessing } = require('tokenizers');
const { corpus } = require('./corpus');

async function main() {
  const [name, file] = process.argv.slice(2);
  if (!name || !file) throw new Error('usage: generate.js NAME tokenizer.json');
  const t = Tokenizer.fromFile(file);
  // transformers' Llama/Gemma/CodeLlama tokenizer classes rebuild the
  // post-processor from tokenizer_config.json's add_bos_token and
  // add_eos_token (update_post_processor); do the same, so that the ids with
  // special tokens are what a transformers user gets.
  const configPath = path.join(path.dirname(file), 'tokenizer_config.json');
  if (fs.existsSync(configPath)) {
    const config = JSON.parse(fs.readFileSync(configPath, 'utf8'));
    const rebuilds = /^(Llama|Gemma|CodeLlama)Tokenizer(Fast)?$/.test(config.tokenizer_class || '');
    if (rebuilds && ('add_bos_token' in config || 'add_eos_token' in config)) {
      const token = (x) => (x && typeof x === 'object' ? x.content : x);
      const bos = token(config.bos_token), eos = token(config.eos_token);
      const addBos = config.add_bos_token !== false, addEos = config.add_eos_token === true;
      const single = `${addBos ? bos + ' ' : ''}$A${addEos ? ' ' + eos : ''}`;
      const specials = [];
      if (addBos) specials.push([bos, t.tokenToId(bos)]);
      if (addEos) specials.push([eos, t.tokenToId(eos)]);
      t.setPostProcessor(templateProcessing(single, undefined, specials));
    }
  }
  const cases = [];
  for (const text of corpus()) {
    const withSpecial = (await t.encode(text, null, { addSpecialTokens: true })).getIds();
    const plain = (await t.encode(text, null, { addSpecialTokens: false })).getIds();
    const decoded = await t.decode(plain, false);
    const decodedSkip = await t.decode(withSpecial, true);
    cases.push({ text, ids: withSpecial, ids_plain: plain, decoded, decoded_skip_special: decodedSkip });
  }
  process.stdout.write(JSON.stringify({ tokenizer: name, generator: 'tokenizers (npm) ' +
    require('tokenizers/package.json').version, cases }, null, 1) + '\n');
}

main().catch((e) => { console.error(e); process.exit(1); });
