// Drives a running tessera-server's OpenAI-compatible API with the official
// `openai` npm package. Run by tests/integration/openai_api_test.cc, which
// passes what to expect (computed over gRPC) as a JSON argument. Prints one
// line per check; exits non-zero at the first failure.
import assert from 'node:assert/strict';
import OpenAI from 'openai';

const cfg = JSON.parse(process.argv[2]);
const client = (key) => new OpenAI({ baseURL: `${cfg.url}/v1`, apiKey: key, maxRetries: 0, timeout: 30000 });
const acme = client(cfg.acme_key);
const zeta = client(cfg.zeta_key);
const greedy = { temperature: 0, max_tokens: cfg.max_tokens, ignore_eos: true };
let checks = 0;
const ok = (what) => { checks++; console.log(`ok ${what}`); };

async function expectError(promise, ctor, status, needle) {
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof ctor, `expected ${ctor.name}, got ${e.constructor.name}: ${e.message}`);
    assert.equal(e.status, status);
    if (needle) assert.match(e.message, new RegExp(needle));
    return e;
  }
  assert.fail(`expected ${ctor.name}`);
}

async function main() {
  if (cfg.mode === 'cancel') return cancel();
  // Models: the base model and what each key may use.
  const models = (await acme.models.list()).data.map((m) => m.id);
  assert.ok(models.includes(cfg.base_model), `models ${models}`);
  assert.ok(models.includes(cfg.adapter), `models ${models}`);
  const zetaModels = (await zeta.models.list()).data.map((m) => m.id);
  assert.ok(!zetaModels.includes(cfg.adapter) && !zetaModels.includes(`acme/${cfg.adapter}`), `${zetaModels}`);
  ok('models.list');

  // Completions: the same greedy text as gRPC, for the base model and the adapter.
  const base = await acme.completions.create({ model: cfg.base_model, prompt: cfg.prompt, ...greedy });
  assert.equal(base.object, 'text_completion');
  assert.equal(base.choices[0].text, cfg.expect_base);
  assert.equal(base.choices[0].finish_reason, 'length');
  assert.equal(base.usage.completion_tokens, cfg.max_tokens);
  assert.equal(base.usage.prompt_tokens, cfg.prompt_tokens);
  assert.equal(base.usage.total_tokens, cfg.prompt_tokens + cfg.max_tokens);
  ok('completions base');
  const lora = await acme.completions.create({ model: cfg.adapter, prompt: cfg.prompt, ...greedy });
  assert.equal(lora.choices[0].text, cfg.expect_adapter);
  assert.notEqual(lora.choices[0].text, base.choices[0].text);
  assert.equal(lora.model, cfg.adapter);
  ok('completions adapter');

  // n choices; a stop string cuts the text and says "stop".
  const two = await acme.completions.create({ model: cfg.base_model, prompt: cfg.prompt, n: 2, ...greedy });
  assert.equal(two.choices.length, 2);
  assert.deepEqual(two.choices.map((c) => c.index), [0, 1]);
  assert.equal(two.choices[1].text, cfg.expect_base);
  assert.equal(two.usage.completion_tokens, 2 * cfg.max_tokens);
  ok('completions n=2');
  const stop = cfg.expect_base.slice(2, 4);
  const stopped = await acme.completions.create({ model: cfg.base_model, prompt: cfg.prompt, ...greedy, stop: [stop] });
  assert.equal(stopped.choices[0].finish_reason, 'stop');
  assert.ok(cfg.expect_base.startsWith(stopped.choices[0].text) && !stopped.choices[0].text.includes(stop),
            `stop '${stop}': '${stopped.choices[0].text}'`);
  ok('completions stop');

  // Seeded sampling is reproducible.
  const sampled = { model: cfg.base_model, prompt: cfg.prompt, max_tokens: cfg.max_tokens, temperature: 1, seed: 7 };
  const s1 = await acme.completions.create(sampled);
  const s2 = await acme.completions.create(sampled);
  assert.equal(s1.choices[0].text, s2.choices[0].text);
  ok('completions seed');

  // Streaming: the chunks join to the same text; usage in the last chunk.
  const stream = await acme.completions.create({
    model: cfg.adapter, prompt: cfg.prompt, ...greedy, stream: true, stream_options: { include_usage: true } });
  let text = '';
  let finish = null;
  let usage = null;
  let chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      text += c.text;
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  assert.equal(text, cfg.expect_adapter);
  assert.equal(finish, 'length');
  assert.ok(chunks >= 3, `${chunks} chunks`);
  assert.equal(usage.completion_tokens, cfg.max_tokens);
  ok('completions stream');

  // Chat through the model's template: the same tokens as the rendered prompt over gRPC.
  const chat = await acme.chat.completions.create({
    model: cfg.base_model, messages: [{ role: 'user', content: cfg.chat_message }], ...greedy });
  assert.equal(chat.object, 'chat.completion');
  assert.equal(chat.choices[0].message.role, 'assistant');
  assert.equal(chat.choices[0].message.content, cfg.expect_chat);
  ok('chat');
  const chatStream = await acme.chat.completions.create({
    model: cfg.base_model, messages: [{ role: 'user', content: cfg.chat_message }], ...greedy, stream: true });
  let chatText = '';
  let role = null;
  for await (const chunk of chatStream) {
    for (const c of chunk.choices) {
      if (c.delta.role) role = c.delta.role;
      chatText += c.delta.content ?? '';
    }
  }
  assert.equal(role, 'assistant');
  assert.equal(chatText, cfg.expect_chat);
  ok('chat stream');

  // Errors in OpenAI's shape, as the SDK's typed errors.
  await expectError(client('wrong-key').completions.create({ model: cfg.base_model, prompt: 'x' }),
                    OpenAI.AuthenticationError, 401, 'API key');
  await expectError(zeta.completions.create({ model: `acme/${cfg.adapter}`, prompt: 'x' }),
                    OpenAI.NotFoundError, 404, 'not loaded');
  await expectError(acme.completions.create({ model: 'no-such-adapter', prompt: 'x' }),
                    OpenAI.NotFoundError, 404, 'models');
  await expectError(acme.completions.create({ model: cfg.base_model, prompt: 'x', max_tokens: 0 }),
                    OpenAI.BadRequestError, 400, 'max_tokens');
  await expectError(acme.completions.create({ model: cfg.base_model, prompt: 'x', logprobs: 2 }),
                    OpenAI.BadRequestError, 400, 'logprobs');
  ok('errors');
  console.log(`all ${checks} checks passed`);
}

async function cancel() {
  // Cancel: aborting a long stream mid-way ends the request on the server.
  const controller = new AbortController();
  const long = await acme.completions.create(
    { model: cfg.base_model, prompt: cfg.prompt, temperature: 0, max_tokens: cfg.long_tokens, ignore_eos: true,
      stream: true }, { signal: controller.signal });
  let got = 0;
  let aborted = false;
  try {
    for await (const chunk of long) {
      got += chunk.choices.length;
      if (got >= 2) controller.abort();
    }
  } catch (e) {
    assert.ok(e instanceof OpenAI.APIUserAbortError || e.name === 'AbortError', `${e.constructor.name}: ${e.message}`);
    aborted = true;
  }
  // The SDK may end the iteration quietly on abort instead of throwing.
  assert.ok(aborted || controller.signal.aborted);
  assert.ok(got < cfg.long_tokens, `read ${got} chunks of ${cfg.long_tokens}`);
  ok('cancel');
}

main().catch((e) => {
  console.error(`FAILED after ${checks} checks: ${e.stack ?? e}`);
  process.exit(1);
});
