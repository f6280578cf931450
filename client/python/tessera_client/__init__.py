"""Python client for Tessera's gRPC API (tessera.v1), on Debian's python3-grpcio.

    from tessera_client import Client
    c = Client("127.0.0.1:50051", api_key="...")
    print(c.generate("Once upon a time", max_new_tokens=16, adapter="support-bot").text)

The generated stubs (tessera/v1/*_pb2*.py) are made from proto/ at build time
(the CMake target tessera_python_client writes them beside a copy of this
package under build/client/python); put that folder on PYTHONPATH.

Every call raises a TesseraError subclass for the status it ends with
(NotFoundError, PermissionDeniedError, ...); `code` and `details` say which.
"""

import hashlib
import os

import grpc

from tessera.v1 import adapters_pb2, adapters_pb2_grpc, inference_pb2, inference_pb2_grpc
from tessera.v1 import ownership_pb2, ownership_pb2_grpc  # noqa: F401 (ownership_pb2: verdict enums)

__all__ = ["Client", "TesseraError"]

CHUNK_BYTES = 1 << 20
_FILES = ("adapter_config.json", "adapter_model.safetensors")


class TesseraError(Exception):
    """A call that did not end with OK."""

    code = None

    def __init__(self, code, details):
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


def _error_class(code):
    name = "".join(p.capitalize() for p in code.name.split("_")) + "Error"
    return type(name, (TesseraError,), {"code": code})


_ERRORS = {code: _error_class(code) for code in grpc.StatusCode if code != grpc.StatusCode.OK}
for _cls in _ERRORS.values():
    globals()[_cls.__name__] = _cls
    __all__.append(_cls.__name__)


def _raise(e):
    code = e.code()
    raise _ERRORS.get(code, TesseraError)(code, e.details()) from None


_FINISH = {
    inference_pb2.FINISH_REASON_STOP: "stop",
    inference_pb2.FINISH_REASON_EOS: "stop",
    inference_pb2.FINISH_REASON_LENGTH: "length",
    inference_pb2.FINISH_REASON_CANCELLED: "cancelled",
}


def finish_reason(message):
    """The shared spelling of a response's finish reason ("stop", "length", "cancelled"; None before the end)."""
    return _FINISH.get(message.finish_reason)


class Client:
    """One channel to a tessera-server; thread-safe, as gRPC channels are."""

    def __init__(self, addr, api_key=None, timeout=600.0, credentials=None):
        key = api_key if api_key is not None else os.environ.get("TESSERA_API_KEY", "")
        self._metadata = (("authorization", f"Bearer {key}"),) if key else ()
        self._timeout = timeout
        if credentials is not None:
            self._channel = grpc.secure_channel(addr, credentials)
        else:
            self._channel = grpc.insecure_channel(addr)
        self._inference = inference_pb2_grpc.InferenceStub(self._channel)
        self._adapters = adapters_pb2_grpc.AdaptersStub(self._channel)
        self._ownership = ownership_pb2_grpc.OwnershipStub(self._channel)

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _call(self, method, request, timeout=None, metadata=()):
        try:
            return method(request, timeout=timeout or self._timeout, metadata=self._metadata + tuple(metadata))
        except grpc.RpcError as e:
            _raise(e)

    # --- Inference ---

    @staticmethod
    def request(prompt=None, *, token_ids=None, messages=None, adapter="", max_new_tokens=None, temperature=None,
                top_k=None, top_p=None, seed=None, stop=(), stop_token_ids=(), ignore_eos=False, request_id=""):
        """A GenerateRequest: `prompt` text, `token_ids`, or chat `messages` [(role, content), ...]."""
        r = inference_pb2.GenerateRequest(adapter_id=adapter, request_id=request_id)
        if messages is not None:
            for role, content in messages:
                r.chat.messages.add(role=role, content=content)
        elif token_ids is not None:
            r.token_ids.ids.extend(token_ids)
        elif prompt is not None:
            r.text = prompt
        for field, value in (("max_new_tokens", max_new_tokens), ("temperature", temperature), ("top_k", top_k),
                             ("top_p", top_p), ("seed", seed)):
            if value is not None:
                setattr(r.sampling, field, value)
        r.stopping.stop.extend(stop)
        r.stopping.stop_token_ids.extend(stop_token_ids)
        r.stopping.ignore_eos = ignore_eos
        return r

    def generate(self, prompt=None, timeout=None, **kwargs):
        """The whole completion: a GenerateResponse (text, token_ids, finish_reason, usage, timings, seed)."""
        return self._call(self._inference.Generate, self.request(prompt, **kwargs), timeout)

    def generate_stream(self, prompt=None, timeout=None, **kwargs):
        """Yields GenerateStreamResponse messages as tokens are generated; the last one has finish_reason and usage.
        Closing the iterator early cancels the request on the server."""
        call = None
        try:
            call = self._inference.GenerateStream(self.request(prompt, **kwargs), timeout=timeout or self._timeout,
                                                  metadata=self._metadata)
            for message in call:
                yield message
        except grpc.RpcError as e:
            _raise(e)
        finally:
            if call is not None:
                call.cancel()

    def info(self):
        return self._call(self._inference.ServerInfo, inference_pb2.ServerInfoRequest(), 30)

    # --- Adapters ---

    def upload_adapter(self, directory, name, *, shared=False, description="", kind="", progress=None,
                       timeout=1800):
        """Uploads DIR/adapter_config.json and DIR/adapter_model.safetensors in 1 MiB chunks with their sha256.
        progress(sent_bytes, total_bytes) is called before the first chunk and after each one."""
        paths = [os.path.join(directory, f) for f in _FILES]
        for p in paths:
            if not os.path.isfile(p):
                raise _ERRORS[grpc.StatusCode.NOT_FOUND](grpc.StatusCode.NOT_FOUND, f"{p}: no such file")
        total = sum(os.path.getsize(p) for p in paths)
        visibility = adapters_pb2.VISIBILITY_SHARED if shared else adapters_pb2.VISIBILITY_PRIVATE

        def messages():
            digest = hashlib.sha256()
            sent = 0
            yield adapters_pb2.UploadAdapterRequest(metadata=adapters_pb2.UploadMetadata(
                name=name, kind=kind, description=description, visibility=visibility))
            if progress:
                progress(0, total)
            for file, path in zip(_FILES, paths):
                with open(path, "rb") as f:
                    while True:
                        data = f.read(CHUNK_BYTES)
                        if not data:
                            break
                        digest.update(data)
                        sent += len(data)
                        yield adapters_pb2.UploadAdapterRequest(chunk=adapters_pb2.FileChunk(file=file, data=data))
                        if progress:
                            progress(sent, total)
            yield adapters_pb2.UploadAdapterRequest(sha256=digest.hexdigest())

        return self._call(self._adapters.UploadAdapter, messages(), timeout)

    def list_adapters(self):
        return list(self._call(self._adapters.ListAdapters, adapters_pb2.ListAdaptersRequest(), 30).adapters)

    def get_adapter(self, reference):
        return self._call(self._adapters.GetAdapter, adapters_pb2.GetAdapterRequest(reference=reference), 30)

    def delete_adapter(self, reference):
        self._call(self._adapters.DeleteAdapter, adapters_pb2.DeleteAdapterRequest(reference=reference), 30)

    def prefetch_adapter(self, reference, timeout=300):
        return self._call(self._adapters.PrefetchAdapter, adapters_pb2.PrefetchAdapterRequest(reference=reference),
                          timeout)

    # --- Ownership ---

    def verify_ownership(self, adapter, credential_id, timeout=300):
        """Checks the SEAL watermark of `adapter` against a registered credential: a VerifyOwnershipResponse."""
        request = ownership_pb2.VerifyOwnershipRequest(adapter_id=adapter, credential_id=credential_id)
        return self._call(self._ownership.VerifyOwnership, request, timeout)
