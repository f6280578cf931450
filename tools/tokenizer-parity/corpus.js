// The parity corpus: varied text that stresses tokenizers (combining marks,
// emoji and ZWJ sequences, flags, CJK, RTL, whitespace runs, tabs and
// newlines, digits, code, special-token text, very long words). Deterministic.
'use strict';

const base = [
  'Hello world', 'Once upon a time, a small robot', ' leading space', 'trailing space ', '  two leading',
  'double  space', 'tab\there', 'new\nline', 'crlf\r\nline', '\n\nstarts with newlines', 'ends with newline\n',
  'many     spaces     between', '\t\t\ttabs', ' ', '  ', '\n', '', 'a', 'A', '.', '...', '?!', '¿Qué tal?',
  'Tiếng Việt có dấu', 'Xin chào thế giới', 'naïve café résumé', 'e\u0301 combining acute', 'a\u0308\u0304 stacked marks',
  'Ångström', 'straße', 'İstanbul ıi', 'ΑΒΓ αβγ', 'Привет, мир!', 'Ελληνικά', 'עברית שלום', 'مرحبا بالعالم',
  'سلام ۱۲۳', 'हिन्दी नमस्ते', 'বাংলা', 'தமிழ்', 'ภาษาไทย', '日本語のテキスト', '中文测试，标点。', '한국어 텍스트',
  '漢字かなカナ混じり', '🙂', '👍🏽 thumbs', '👨‍👩‍👧‍👦 family', '🏳️‍🌈 flag', '🇫🇷🇩🇪🇯🇵 flags', '❤️ heart', '🧑🏿‍💻 coder',
  'emoji🙂inside', '1234567890', '3.14159', '1,000,000', '2026-12-01T21:28:12Z', '0x7fffffff', '-42', '+1 (555) 010-9999',
  '100%', '$9.99', '€5,00', '¥1000', 'x = y + 2 * z', 'for (int i = 0; i < n; ++i) { sum += a[i]; }',
  'def f(x):\n    return x ** 2\n', '    indented four', '<html><body>hi</body></html>', '{"key": "value", "n": [1, 2]}',
  'SELECT * FROM t WHERE id = 1;', 'https://example.com/path?q=1&r=2#frag', 'user@example.com', '#hashtag @mention',
  'C:\\Windows\\System32', '/usr/local/bin', '¡Hola!', '"quoted" and \'single\'', '«guillemets»', '— em dash – en dash',
  '…ellipsis', '©®™', '½ ¼ ¾', '∑∫√∞≠≤', '→ ← ↑ ↓', '©2026', 'ﬁ ligature', 'Ｆｕｌｌｗｉｄｔｈ', 'ｶﾀｶﾅ half-width',
  '\u00a0non-breaking', 'zero\u200bwidth', 'soft\u00adhyphen', 'bidi \u202eoverride\u202c end', 'tab\tand space mixed \t',
  'supercalifragilisticexpialidocious', 'pneumonoultramicroscopicsilicovolcanoconiosis',
  'Donaudampfschifffahrtsgesellschaftskapitän', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
  'abcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabc', 'ZZZZZZZZZZZZZZZZZZZZZZZZ', '____________', '------------',
  '============', '************', 'The quick brown fox jumps over the lazy dog.', 'THE QUICK BROWN FOX', "don't won't can't",
  "I'm you're we've they'll", 'U.S.A. e.g. i.e.', 'Mr. Smith Jr.', 'CamelCaseWord', 'snake_case_word', 'kebab-case-word',
  'ALLCAPS and lowercase', 'MiXeD CaSe', 'x', 'xx', 'xxx', '1', '12', '123', '1234', '12345', ' 1', '1 ',
];

const special = ['<s>', '</s>', '<unk>', '<|endoftext|>', '<|begin_of_text|>', '<|im_start|>', '<|im_end|>', '[INST]', '[/INST]'];

function corpus() {
  const out = [...base];
  for (const s of special) {
    out.push(s, `${s}Hello`, `Hello ${s} world`, ` ${s} `, `${s}${s}`);
  }
  // Mixtures, for a corpus of at least 200 strings.
  for (let i = 0; i + 1 < 60; i += 2) out.push(base[i] + ' ' + base[i + 1]);
  out.push(base.slice(20, 40).join(' '));
  out.push('word '.repeat(200).trim());
  out.push('🙂'.repeat(50));
  out.push('中'.repeat(100));
  out.push(' '.repeat(33) + 'x' + '\n'.repeat(5));
  return out;
}

module.exports = { corpus };
