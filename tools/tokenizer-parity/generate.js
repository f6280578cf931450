// Writes the expected ids and decodes of HF `tokenizers` (the official Node
// binding) for every corpus string, for one tokenizer.json. Run by hand:
//   npm install tokenizers   (once, anywhere; works offline afterwards)
//   NODE_PATH=.../node_modules node tools/tokenizer-parity/generate.js \
//       NAME path/to/tokenizer.json > tests/fixtures/tokenizers/NAME/expected.json
'use strict';
const { Tokenizer } = require('tokenizers');
const { corpus } = require('./corpus');

async function main() {
  const [name, file] = process.argv.slice(2);
  if (!name || !file) throw new Error('usage: generate.js NAME tokenizer.json');
  const t = Tokenizer.fromFile(file);
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
