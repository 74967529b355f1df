"""Google's own client libraries carrying our tokens (issue 13, item 7): google-api-python-client
(its shipped discovery document for Cloud Storage, over httplib2) against a local HTTP server, and
Pub/Sub over gRPC, sync and asyncio, against a local gRPC server. Both servers record the
authorization each request carried and refuse a request without a bearer token; the tokens come
from the emulator's metadata server through ``workload_auth.google_auth.Credentials``."""

import asyncio
import http.server
import json
import threading
from concurrent import futures
from typing import Any, Dict, Iterator, List, Optional

import pytest

import workload_auth
from conftest import Emulator

pytest.importorskip("google.auth")
from workload_auth import google_auth  # noqa: E402

PROJECT = "python-project"


class RecordingHttpServer:
    """An HTTP server on loopback that records each request's method, path and headers and answers
    ``{"kind": "storage#buckets", "items": []}`` (401 without a bearer token)."""

    def __init__(self) -> None:
        self.requests: List[Dict[str, Any]] = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                headers = {k.lower(): v for k, v in self.headers.items()}
                recorder.requests.append({"path": self.path, "headers": headers})
                authorized = headers.get("authorization", "").startswith("Bearer ")
                body = json.dumps(
                    {"kind": "storage#buckets", "items": []}
                    if authorized
                    else {"error": {"code": 401, "message": "no token"}}
                ).encode()
                self.send_response(200 if authorized else 401)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def recording_http() -> Iterator[RecordingHttpServer]:
    server = RecordingHttpServer()
    try:
        yield server
    finally:
        server.close()


def test_google_api_python_client_sends_our_tokens(
    emulator: Emulator, recording_http: RecordingHttpServer
) -> None:
    discovery = pytest.importorskip("googleapiclient.discovery")
    wa = workload_auth.default(metadata_host=emulator.host, quota_project="billing-project")
    creds = google_auth.Credentials(wa)
    # The discovery document shipped with the library (no network), pointed at the recorder.
    service = discovery.build(
        "storage",
        "v1",
        credentials=creds,
        client_options={"api_endpoint": recording_http.url},
        static_discovery=True,
        cache_discovery=False,
    )
    first = service.buckets().list(project=PROJECT).execute()
    second = service.buckets().list(project=PROJECT).execute()
    assert first == second == {"kind": "storage#buckets", "items": []}
    # The client scoped the credentials with the discovery document's scopes.
    used = service._http.credentials
    assert isinstance(used, google_auth.Credentials) and used is not creds
    scopes = used.scopes or used.default_scopes
    assert scopes and "https://www.googleapis.com/auth/devstorage.read_only" in scopes
    assert len(recording_http.requests) == 2
    for request in recording_http.requests:
        # api_endpoint replaces the base URL (root and service path): GET {endpoint}/b.
        assert request["path"].startswith(f"/b?project={PROJECT}")
        # The scoped token, from the shared cache: the same one the native credentials hold.
        assert request["headers"]["authorization"] == f"Bearer {wa.token(list(scopes))}"
        assert request["headers"]["x-goog-user-project"] == "billing-project"
    assert wa.token(list(scopes)) != wa.token()


class RecordingPubSub:
    """A gRPC server on loopback (local channel credentials, which carry call credentials as TLS
    would) implementing ``google.pubsub.v1.Publisher/Publish``: records each call's metadata and
    messages, answers message ids, and fails a call without a bearer token UNAUTHENTICATED."""

    def __init__(self) -> None:
        import grpc
        from google.pubsub_v1 import types

        self.calls: List[Dict[str, Any]] = []
        recorder = self

        def publish(request: Any, context: Any) -> Any:
            metadata = {k: v for k, v in context.invocation_metadata()}
            recorder.calls.append(
                {"metadata": metadata, "topic": request.topic, "messages": list(request.messages)}
            )
            if not str(metadata.get("authorization", "")).startswith("Bearer "):
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "no bearer token")
            first = len(recorder.calls) * 100
            return types.PublishResponse(
                message_ids=[str(first + i) for i in range(len(request.messages))]
            )

        handler = grpc.method_handlers_generic_handler(
            "google.pubsub.v1.Publisher",
            {
                "Publish": grpc.unary_unary_rpc_method_handler(
                    publish,
                    request_deserializer=types.PublishRequest.deserialize,
                    response_serializer=types.PublishResponse.serialize,
                )
            },
        )
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self._server.add_generic_rpc_handlers((handler,))
        local = grpc.local_server_credentials(grpc.LocalConnectionType.LOCAL_TCP)
        port = self._server.add_secure_port("127.0.0.1:0", local)
        assert port > 0
        self.host = f"127.0.0.1:{port}"
        self._server.start()

    @staticmethod
    def channel_credentials() -> Any:
        import grpc

        return grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP)

    def close(self) -> None:
        self._server.stop(grace=None)


@pytest.fixture
def recording_pubsub() -> Iterator[RecordingPubSub]:
    pytest.importorskip("grpc")
    pytest.importorskip("google.pubsub_v1")
    server = RecordingPubSub()
    try:
        yield server
    finally:
        server.close()


def _check_calls(
    calls: List[Dict[str, Any]], expected_token: str, quota: Optional[str], topic: str
) -> None:
    assert calls
    for call in calls:
        assert call["metadata"]["authorization"] == f"Bearer {expected_token}"
        if quota is not None:
            assert call["metadata"]["x-goog-user-project"] == quota
        assert call["topic"] == topic


def test_pubsub_publisher_over_grpc_sends_our_tokens(
    emulator: Emulator, recording_pubsub: RecordingPubSub
) -> None:
    from google.cloud import pubsub_v1
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

    wa = workload_auth.default(metadata_host=emulator.host, quota_project="billing-project")
    creds = google_auth.Credentials(wa)
    transport = PublisherGrpcTransport(
        host=recording_pubsub.host,
        credentials=creds,
        ssl_channel_credentials=recording_pubsub.channel_credentials(),
    )
    publisher = pubsub_v1.PublisherClient(transport=transport)
    topic = f"projects/{PROJECT}/topics/orders"
    ids = [publisher.publish(topic, f"m{i}".encode()).result(timeout=30) for i in range(3)]
    assert len(ids) == 3 and all(ids)
    # api-core's channel scoped the credentials with Pub/Sub's scopes (with_scopes_if_required):
    # the scoped token from the shared cache, not the default one.
    scopes = _pubsub_scopes()
    assert "https://www.googleapis.com/auth/pubsub" in scopes
    assert wa.token(scopes) != wa.token()
    _check_calls(recording_pubsub.calls, wa.token(scopes), "billing-project", topic)
    sent = [m.data for call in recording_pubsub.calls for m in call["messages"]]
    assert sent == [b"m0", b"m1", b"m2"]
    publisher.stop()
    transport.close()


def test_pubsub_asyncio_client_over_grpc_sends_our_tokens(
    emulator: Emulator, recording_pubsub: RecordingPubSub
) -> None:
    from google.pubsub_v1 import PublisherAsyncClient, PubsubMessage
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcAsyncIOTransport

    wa = workload_auth.default(metadata_host=emulator.host)
    creds = google_auth.Credentials(wa)
    topic = f"projects/{PROJECT}/topics/async-orders"

    async def main() -> List[str]:
        transport = PublisherGrpcAsyncIOTransport(
            host=recording_pubsub.host,
            credentials=creds,
            ssl_channel_credentials=recording_pubsub.channel_credentials(),
        )
        client = PublisherAsyncClient(transport=transport)
        ids: List[str] = []
        for i in range(3):
            answer = await client.publish(
                topic=topic, messages=[PubsubMessage(data=f"a{i}".encode())], timeout=30
            )
            ids.extend(answer.message_ids)
        await transport.close()
        return ids

    ids = asyncio.run(main())
    assert len(ids) == 3
    assert len(recording_pubsub.calls) == 3
    _check_calls(recording_pubsub.calls, wa.token(_pubsub_scopes()), None, topic)


def _pubsub_scopes() -> List[str]:
    from google.pubsub_v1.services.publisher.transports.base import PublisherTransport

    return list(PublisherTransport.AUTH_SCOPES)


def test_the_recording_servers_refuse_a_call_without_a_token(
    recording_http: RecordingHttpServer, recording_pubsub: RecordingPubSub
) -> None:
    # The baseline of the tests above: without our credentials, the servers refuse the calls.
    import requests
    from google.api_core import exceptions as api_exceptions
    from google.auth.credentials import AnonymousCredentials
    from google import pubsub_v1
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

    assert requests.get(f"{recording_http.url}/storage/v1/b").status_code == 401
    transport = PublisherGrpcTransport(
        host=recording_pubsub.host,
        credentials=AnonymousCredentials(),
        ssl_channel_credentials=recording_pubsub.channel_credentials(),
    )
    client = pubsub_v1.PublisherClient(transport=transport)
    with pytest.raises(api_exceptions.Unauthenticated):
        client.publish(
            topic=f"projects/{PROJECT}/topics/t", messages=[{"data": b"x"}], timeout=10,
            retry=None,
        )
    assert "authorization" not in recording_pubsub.calls[-1]["metadata"]
    transport.close()
