"""The Python client (client/python) against a running tessera-server.

Run by tests/integration/python_client_test.cc, which starts the server and
passes its address, API keys and the fixture folder in the environment.
Token ids are compared with HF transformers' greedy outputs (expected.json).
"""

import json
import os
import unittest

import tessera_client
from tessera_client import Client

ADDR = os.environ["TESSERA_ADDR"]
FIXTURES = os.environ["TESSERA_FIXTURES"]
EXPECTED = json.load(open(os.path.join(FIXTURES, "expected.json")))


def greedy(variant, index):
    r = EXPECTED["results"][variant]
    steps = r["greedy_reliable_steps"][index] if "greedy_reliable_steps" in r else 16
    return r["greedy"][index][: min(steps, 16)]


def prompt_ids(index):
    return EXPECTED["prompts"][index]["ids"]


class ClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.owner = Client(ADDR, api_key="owner-key")
        cls.other = Client(ADDR, api_key="other-key")

    def gen(self, client, variant, **kwargs):
        r = client.generate(token_ids=prompt_ids(1), max_new_tokens=16, temperature=0, ignore_eos=True, **kwargs)
        want = greedy(variant, 1)
        self.assertEqual(list(r.token_ids)[: len(want)], want)
        return r

    def test_1_info_and_generate(self):
        info = self.owner.info()
        self.assertEqual(info.backend, "cpu")
        r = self.gen(self.owner, "base")
        self.assertEqual(tessera_client.finish_reason(r), "length")
        self.assertEqual(r.usage.completion_tokens, 16)
        text = self.owner.generate("Once upon a time", max_new_tokens=4, temperature=0).text
        self.assertIsInstance(text, str)

    def test_2_stream_matches_unary(self):
        unary = self.owner.generate(token_ids=prompt_ids(1), max_new_tokens=8, temperature=0, ignore_eos=True)
        messages = list(self.owner.generate_stream(token_ids=prompt_ids(1), max_new_tokens=8, temperature=0,
                                                   ignore_eos=True))
        ids = [i for m in messages for i in m.token_ids]
        self.assertEqual(ids, list(unary.token_ids))
        self.assertEqual("".join(m.text_delta for m in messages), unary.text)
        self.assertIsNone(tessera_client.finish_reason(messages[0]))
        self.assertEqual(tessera_client.finish_reason(messages[-1]), "length")

    def test_3_adapters(self):
        seen = []
        info = self.owner.upload_adapter(os.path.join(FIXTURES, "adapters", "lora"), "py-lora",
                                         progress=lambda sent, total: seen.append((sent, total)))
        self.assertEqual(info.kind, "lora")
        self.assertEqual(info.reference, "acme/py-lora")
        total = seen[-1][1]
        self.assertEqual(seen[0], (0, total))
        self.assertEqual(seen[-1], (total, total))
        self.assertEqual(info.stored_bytes, total)
        self.assertIn("acme/py-lora", [a.reference for a in self.owner.list_adapters()])
        self.assertEqual(self.owner.get_adapter("py-lora").sha256, info.sha256)
        self.owner.prefetch_adapter("py-lora")
        self.gen(self.owner, "lora", adapter="py-lora")
        # Another tenant's private adapter does not exist for it.
        with self.assertRaises(tessera_client.NotFoundError) as e:
            self.other.generate(token_ids=prompt_ids(1), max_new_tokens=2, adapter="acme/py-lora")
        self.assertEqual(e.exception.code.name, "NOT_FOUND")
        with self.assertRaises(tessera_client.AlreadyExistsError):
            self.owner.upload_adapter(os.path.join(FIXTURES, "adapters", "lora"), "py-lora")
        self.owner.delete_adapter("py-lora")
        with self.assertRaises(tessera_client.NotFoundError):
            self.owner.get_adapter("py-lora")
        with self.assertRaises(tessera_client.NotFoundError):
            self.owner.upload_adapter("/nonexistent", "x")

    def test_4_errors_are_typed(self):
        with self.assertRaises(tessera_client.UnauthenticatedError) as e:
            Client(ADDR, api_key="wrong").info()
        self.assertIn("API key", e.exception.details)
        with self.assertRaises(tessera_client.InvalidArgumentError):
            self.owner.generate(token_ids=prompt_ids(1), max_new_tokens=0)
        self.assertTrue(issubclass(tessera_client.InvalidArgumentError, tessera_client.TesseraError))

    def test_5_verify_ownership(self):
        self.owner.upload_adapter(os.path.join(FIXTURES, "adapters", "seal"), "py-seal")
        v = self.owner.verify_ownership("py-seal", "seal-key")
        self.assertEqual(v.verdict, tessera_client.ownership_pb2.OWNERSHIP_VERDICT_OWNED)
        self.assertGreater(v.score, v.threshold)
        plain = self.owner.upload_adapter(os.path.join(FIXTURES, "adapters", "lora2"), "py-plain")
        v = self.owner.verify_ownership(plain.name, "seal-key")
        self.assertNotEqual(v.verdict, tessera_client.ownership_pb2.OWNERSHIP_VERDICT_OWNED)


if __name__ == "__main__":
    unittest.main(verbosity=2)
