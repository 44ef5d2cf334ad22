"""exoclaw's own HTTP for plug-ins, with a plug-in that calls Extism's kernel HTTP imports as every PDK does (http_probe) and
real loopback servers that record every request: each hop checked, non-public addresses refused,
secrets injected for their host only and never seen by the plug-in, limits, and the record of
every request."""

import ipaddress
import json
import logging

import pytest

from sandbox.errors import SandboxError
from sandbox.host import Host
from sandbox.manifest import Grant
from sandbox.net import system_resolver
from tests.net_fixtures import api, https_api, https_other, target, tls_ca  # noqa: F401
from tests.sandbox_fixtures import spec

SECRET = "PLUGIN-SECRET-VALUE-xyz"


def resolver(names: dict):
    """DNS for the tests: these names resolve to these addresses, the rest as the system says."""
    def resolve(host, port):
        if host in names:
            return [ipaddress.ip_address(a) for a in names[host]]
        return system_resolver(host, port)
    return resolve


@pytest.fixture
def host():
    h = Host(max_workers=4, resolver=resolver({"api.example.test": ["127.0.0.1"], "also.test": ["127.0.0.1"],
                                               "public.test": ["127.0.0.1"]}))
    yield h
    h.shutdown()


def fetch(host, grant, url, *, method="GET", headers=None, body=None, environ=None):
    request = json.dumps({"method": method, "url": url, "headers": headers or {}}).encode()
    kwargs = {"environ": environ} if environ is not None else {}
    if body is None:
        out = host.run(spec("http_probe"), "fetch", request, grant, **kwargs)
    else:
        out = host.run(spec("http_probe"), "send", request + b"\n" + body, grant, **kwargs)
    return json.loads(out.output), out


def refused(host, grant, url, reason, **kwargs) -> SandboxError:
    with pytest.raises(SandboxError) as caught:
        fetch(host, grant, url, **kwargs)
    assert (caught.value.kind, caught.value.reason) == ("host_denied", reason), str(caught.value)
    return caught.value


def test_a_granted_host_and_port_is_reached(host, api):
    seen, out = fetch(host, Grant(allowed_hosts=(f"127.0.0.1:{api.port}",)), api.url("/ok?x=1"))
    assert seen["status"] == 200 and json.loads(seen["body"])["path"] == "/ok"
    assert out.http == ({"method": "GET", "host": f"127.0.0.1:{api.port}", "path": "/ok", "status": 200,
                         "bytes": len(seen["body"]), "duration_ms": out.http[0]["duration_ms"], "refused": None},)


def test_calls_reuse_a_kept_alive_connection(host, api):
    grant = Grant(allowed_hosts=(f"127.0.0.1:{api.port}",))
    for _ in range(3):
        fetch(host, grant, api.url("/ok"))
    assert len({s.peer_port for s in api.seen}) == 1, "each request opened a new connection"


def test_a_connection_the_server_closed_while_idle_is_not_reused(host, api):
    grant = Grant(allowed_hosts=(f"127.0.0.1:{api.port}",))
    seen, _ = fetch(host, grant, api.url("/drop"))
    assert seen["status"] == 200
    assert api.closed.acquire(timeout=10), "the server did not close the connection"
    seen, _ = fetch(host, grant, api.url("/ok"))
    assert seen["status"] == 200
    assert [s.path for s in api.seen] == ["/drop", "/ok"]
    assert api.seen[0].peer_port != api.seen[1].peer_port


def test_a_redirect_to_a_port_not_granted_is_refused_and_the_target_sees_nothing(host, api, target):
    grant = Grant(allowed_hosts=(f"127.0.0.1:{api.port}",))
    error = refused(host, grant, api.url(f"/redirect?to={target.url('/stolen')}"), "port_not_granted")
    assert f"redirect refused (port_not_granted): {target.url('/stolen')}" in error.message
    assert "nothing was requested from it" in error.message
    assert [s.path for s in api.seen] == ["/redirect"]
    assert target.seen == [], "the redirect target must not be contacted"
    assert [(r["path"], r["status"], r["refused"]) for r in error.http] == [
        ("/redirect", 302, None), ("/stolen", None, "port_not_granted")]


def test_a_redirect_to_a_host_not_granted_is_refused(host, api, target):
    grant = Grant(allowed_hosts=(f"api.example.test:{api.port}",))
    refused(host, grant, api.url(f"/redirect?to={target.url('/x', host='localhost')}", host="api.example.test"), "not_granted")
    assert target.seen == []


@pytest.mark.parametrize("to", ["http://2130706433:{port}/", "http://[::ffff:127.0.0.1]:{port}/",
                                "http://granted@127.0.0.1:{port}/"])
def test_a_redirect_to_a_disguised_address_is_refused(host, api, target, to):
    grant = Grant(allowed_hosts=(f"127.0.0.1:{api.port}", f"127.0.0.1:{target.port}"))
    url = api.url("/redirect?to=" + to.format(port=target.port).replace("@", "%40").replace("[", "%5B").replace("]", "%5D"))
    with pytest.raises(SandboxError) as caught:
        fetch(host, grant, url)
    assert caught.value.kind == "host_denied" and "redirect refused" in caught.value.message
    assert target.seen == []


def test_a_redirect_within_the_grant_is_followed(host, api, target):
    grant = Grant(allowed_hosts=(f"127.0.0.1:{api.port}", f"localhost:{target.port}"))
    seen, out = fetch(host, grant, api.url(f"/redirect?status=307&to={target.url('/landed', host='localhost')}"))
    assert seen["status"] == 200 and json.loads(seen["body"])["server"] == "target"
    assert [s.path for s in target.seen] == ["/landed"]
    assert [(r["host"], r["path"], r["status"], r.get("redirect", False)) for r in out.http] == [
        (f"127.0.0.1:{api.port}", "/redirect", 307, False), (f"localhost:{target.port}", "/landed", 200, True)]


def test_a_name_resolving_to_loopback_is_refused_through_a_wildcard_and_reached_when_named(host, api):
    error = refused(host, Grant(allowed_hosts=(f"*.example.test:{api.port}",)), api.url("/ok", host="api.example.test"), "private_address")
    assert "resolves to 127.0.0.1" in error.message
    assert api.seen == []
    seen, _ = fetch(host, Grant(allowed_hosts=(f"api.example.test:{api.port}",)), api.url("/ok", host="api.example.test"))
    # Connected to the address checked, with the name in the Host header.
    assert json.loads(seen["body"])["host"] == f"api.example.test:{api.port}"


@pytest.mark.parametrize("url", [
    "http://[::ffff:127.0.0.1]:{port}/", "http://2130706433:{port}/", "http://0177.0.0.1:{port}/",
    "http://0x7f.0.0.1:{port}/", "http://127.1:{port}/", "http://granted@127.0.0.1:{port}/",
    "http://127.0.0.1:{port}@granted/", "http://%31%32%37.0.0.1:{port}/",
])
def test_disguised_loopback_addresses_are_refused(host, api, url):
    grant = Grant(allowed_hosts=(f"127.0.0.1:{api.port}", f"granted:{api.port}", "granted"))
    with pytest.raises(SandboxError) as caught:
        fetch(host, grant, url.format(port=api.port))
    assert caught.value.kind == "host_denied" and caught.value.reason in ("numeric_host", "userinfo"), str(caught.value)
    assert api.seen == []


def test_a_port_not_in_the_grant_is_refused(host, api):
    error = refused(host, Grant(allowed_hosts=("127.0.0.1", "localhost:1")), api.url("/ok"), "port_not_granted")
    assert "(granted: 127.0.0.1)" in error.message
    assert api.seen == []


def test_methods_and_path_prefixes_are_checked(host, api):
    grant = Grant(allowed_hosts=({"host": f"http://127.0.0.1:{api.port}", "methods": ["GET"], "path_prefix": "/v1/"},))
    assert fetch(host, grant, api.url("/v1/items"))[0]["status"] == 200
    refused(host, grant, api.url("/v1/items"), "method_not_granted", method="POST", body=b"{}")
    refused(host, grant, api.url("/v2/items"), "path_not_granted")
    refused(host, grant, api.url("/v1/../admin"), "path_not_granted")
    assert [s.path for s in api.seen] == ["/v1/items"]


def test_nothing_is_reachable_without_a_grant(host, api):
    refused(host, Grant(), api.url("/ok"), "not_granted")
    assert api.seen == []


def test_a_response_larger_than_the_grant_allows_fails_the_call(host, api):
    grant = Grant(allowed_hosts=(f"127.0.0.1:{api.port}",), max_http_response_bytes=1000)
    assert len(fetch(host, grant, api.url("/big?n=1000"))[0]["body"]) == 1000
    refused(host, grant, api.url("/big?n=1001"), "response_too_large")


def test_a_request_is_held_to_the_calls_remaining_time(host, api):
    grant = Grant(allowed_hosts=(f"127.0.0.1:{api.port}",), timeout_ms=300)
    with pytest.raises(SandboxError) as caught:
        fetch(host, grant, api.url("/hang"))
    assert caught.value.kind == "timeout"


@pytest.mark.parametrize("part", ["head", "body"])
def test_a_server_that_answers_a_byte_at_a_time_is_held_to_the_calls_time(host, api, part):
    # Four seconds of answer against a 500 ms call: each byte comes well within any socket timeout.
    grant = Grant(allowed_hosts=(f"127.0.0.1:{api.port}",), timeout_ms=500)
    with pytest.raises(SandboxError) as caught:
        fetch(host, grant, api.url(f"/drip?part={part}"))
    assert caught.value.kind == "timeout", str(caught.value)


def test_an_interim_response_is_not_taken_for_the_answer(host, api):
    grant = Grant(allowed_hosts=(f"127.0.0.1:{api.port}",))
    seen, _ = fetch(host, grant, api.url("/early"))
    assert (seen["status"], seen["body"]) == (200, "final")
    # The connection carries nothing left over into the next request.
    seen, _ = fetch(host, grant, api.url("/ok"))
    assert json.loads(seen["body"])["path"] == "/ok"


def test_a_get_is_sent_again_on_a_new_connection_when_the_server_closes_a_kept_alive_one_under_it(host, api):
    grant = Grant(allowed_hosts=(f"127.0.0.1:{api.port}",))
    fetch(host, grant, api.url("/then-drop"))
    seen, out = fetch(host, grant, api.url("/ok"))
    assert json.loads(seen["body"])["path"] == "/ok"
    assert api.dropped == ["/ok"], "the request did not go over the kept-alive connection first"
    assert api.seen[0].peer_port != api.seen[1].peer_port
    assert [r["status"] for r in out.http] == [200]


def test_a_post_is_not_sent_again_when_the_server_closes_a_kept_alive_one_under_it(host, api):
    grant = Grant(allowed_hosts=(f"127.0.0.1:{api.port}",))
    fetch(host, grant, api.url("/then-drop"))
    with pytest.raises(SandboxError) as caught:
        fetch(host, grant, api.url("/ok"), method="POST", body=b"once")
    assert (caught.value.kind, caught.value.reason) == ("network_error", "failed")
    assert api.dropped == ["/ok"] and [s.path for s in api.seen] == ["/then-drop"]


def test_plugins_do_not_share_kept_alive_connections(host, api):
    grant = Grant(allowed_hosts=(f"127.0.0.1:{api.port}",))
    fetch(host, grant, api.url("/probe"))
    out = host.run(spec("http_get"), "call", json.dumps({"params": {"name": "fetch", "arguments": {
        "url": api.url("/http_get")}}}).encode(), grant)
    assert b"/http_get" in out.output
    fetch(host, grant, api.url("/probe-again"))
    ports = {s.path: s.peer_port for s in api.seen}
    assert ports["/probe"] == ports["/probe-again"] != ports["/http_get"]


def test_shutting_the_host_down_closes_its_idle_connections(api):
    host = Host(max_workers=1)
    fetch(host, Grant(allowed_hosts=(f"127.0.0.1:{api.port}",)), api.url("/ok"))
    host.shutdown()
    assert api.closed.acquire(timeout=10), "the idle connection was left open"


def test_requests_per_call_count_every_redirect_hop(host, api):
    grant = Grant(allowed_hosts=(f"127.0.0.1:{api.port}",), http_requests_per_call=2)
    hop2 = api.url("/redirect?to=" + api.url("/ok"))
    refused(host, grant, api.url("/redirect?to=" + hop2.replace("?", "%3F").replace("=", "%3D").replace("&", "%26")),
            "too_many_requests")
    assert len(api.seen) == 2


def test_requests_per_minute_are_limited_per_plugin(host, api):
    grant = Grant(allowed_hosts=(f"127.0.0.1:{api.port}",), http_requests_per_minute=2)
    fetch(host, grant, api.url("/1"))
    fetch(host, grant, api.url("/2"))
    refused(host, grant, api.url("/3"), "rate_limited")
    assert [s.path for s in api.seen] == ["/1", "/2"]


def bearer(api) -> Grant:
    return Grant(
        allowed_hosts=(f"127.0.0.1:{api.port}", f"localhost:{api.port}"),
        http_secrets=({"host": f"127.0.0.1:{api.port}", "header": "Authorization", "format": "Bearer {secret}",
                       "secret_env": "WEATHER_KEY"},),
    )


def test_a_header_secret_reaches_its_host_and_the_plugin_never_sees_it(host, api):
    seen, out = fetch(host, bearer(api), api.url("/weather"), environ={"WEATHER_KEY": SECRET})
    assert api.seen[0].headers["Authorization"] == f"Bearer {SECRET}"
    # The fake API echoed the header in its body and its response headers; the plug-in echoed its
    # config, its request and everything it could read: no trace of the secret.
    assert seen["config"] is None and seen["headers"]["x-echo-authorization"] == "Bearer [redacted]"
    assert SECRET not in out.output.decode() and SECRET not in json.dumps(out.http)


def test_a_secret_is_not_sent_to_another_granted_host(host, api):
    fetch(host, bearer(api), api.url("/other", host="localhost"), environ={"WEATHER_KEY": SECRET})
    assert "Authorization" not in api.seen[0].headers


def test_a_plugin_cannot_override_an_injected_header(host, api):
    fetch(host, bearer(api), api.url("/w"), headers={"authorization": "Bearer guessed"}, environ={"WEATHER_KEY": SECRET})
    assert [v for k, v in api.seen[0].headers.items() if k.lower() == "authorization"] == [f"Bearer {SECRET}"]


def query_secret(api) -> Grant:
    return Grant(
        allowed_hosts=(f"127.0.0.1:{api.port}",),
        http_secrets=({"host": f"127.0.0.1:{api.port}", "query": "appid", "secret_env": "WEATHER_KEY"},),
    )


def test_a_query_secret_is_added_to_requests_to_its_host(host, api):
    seen, out = fetch(host, query_secret(api), api.url("/ok?q=rome"), environ={"WEATHER_KEY": SECRET})
    assert api.seen[0].query == {"q": ["rome"], "appid": [SECRET]}
    assert SECRET not in out.output.decode() and seen["headers"]["x-echo-query"] == "q=rome&appid=[redacted]"


def test_a_redirect_carrying_a_secret_to_another_host_is_refused(host, api, target):
    grant = Grant(allowed_hosts=(*query_secret(api).allowed_hosts, f"localhost:{target.port}"),
                  http_secrets=query_secret(api).http_secrets)
    leak = target.url(f"/collect?appid={SECRET}", host="localhost").replace("?", "%3F").replace("=", "%3D")
    error = refused(host, grant, api.url(f"/redirect?to={leak}"), "secret_leak", environ={"WEATHER_KEY": SECRET})
    assert target.seen == [] and SECRET not in str(error)


def test_errors_show_urls_without_their_query_string_or_userinfo(host, api, caplog):
    grant = Grant(allowed_hosts=(f"127.0.0.1:{api.port}",))
    error = refused(host, grant, f"http://localhost:{api.port}/x?appid={SECRET}", "not_granted")
    assert SECRET not in str(error) and f"http://localhost:{api.port}/x" in error.message
    error = refused(host, grant, f"http://user:{SECRET}@127.0.0.1:{api.port}/", "userinfo")
    assert SECRET not in str(error)


def test_a_secret_given_as_config_is_redacted_from_what_comes_out(host, api):
    # A third-party plug-in that needs its key as config still gets it, but what it returns (here, a
    # request echoing the key) comes out redacted.
    grant = Grant(allowed_hosts=(f"127.0.0.1:{api.port}",), secret_env={"api_key": "WEATHER_KEY"})
    seen, out = fetch(host, grant, api.url(f"/ok?appid={SECRET}"), environ={"WEATHER_KEY": SECRET})
    assert seen["config"] == "[redacted]" and SECRET not in out.output.decode()


def test_a_missing_secret_variable_fails_the_request_by_name(host, api):
    with pytest.raises(SandboxError) as caught:
        fetch(host, bearer(api), api.url("/ok"), environ={})
    assert caught.value.kind == "not_found" and "WEATHER_KEY" in caught.value.message
    assert api.seen == []


@pytest.mark.parametrize("value", [SECRET + "\n", SECRET + "\r\nX-Injected: 1", SECRET + "\u20ac"])
def test_a_secret_a_header_cannot_carry_fails_by_name_and_is_not_shown(host, api, value):
    with pytest.raises(SandboxError) as caught:
        fetch(host, bearer(api), api.url("/ok"), environ={"WEATHER_KEY": value})
    assert (caught.value.kind, caught.value.reason) == ("network_error", "bad_secret")
    assert "WEATHER_KEY" in caught.value.message and SECRET not in caught.value.message
    assert api.seen == []


@pytest.mark.parametrize("headers", [{"X Bad Name": "value-17"}, {"X-Euro": "price-17 \u20ac"}])
def test_a_header_http_cannot_carry_is_refused_without_echoing_it(host, api, headers):
    error = refused(host, Grant(allowed_hosts=(f"127.0.0.1:{api.port}",)), api.url("/ok"), "bad_request",
                    headers=headers)
    assert all(k not in error.message and v not in error.message for k, v in headers.items())
    assert api.seen == []


def test_sandbox_log_lines_never_carry_a_secret(host, api, caplog):
    caplog.set_level(logging.DEBUG)
    fetch(host, bearer(api), api.url("/ok"), environ={"WEATHER_KEY": SECRET})
    with pytest.raises(SandboxError):
        fetch(host, bearer(api), f"http://localhost:1/x?appid={SECRET}", environ={"WEATHER_KEY": SECRET})
    assert SECRET not in caplog.text


# HTTPS, against loopback servers whose certificates come from a throwaway CA (tls_ca): exoclaw
# connects to the address it checked, sends the URL's name as SNI and verifies the certificate for
# that name, against the CAs its host is given (certifi's when none).

@pytest.fixture
def tls_host(tls_ca):
    h = Host(max_workers=4, resolver=resolver({"api.example.test": ["127.0.0.1"]}), ca_bundle=str(tls_ca.path))
    yield h
    h.shutdown()


def test_https_to_a_granted_name_sends_sni_and_verifies_the_certificate_for_it(tls_host, https_api):
    grant = Grant(allowed_hosts=(f"localhost:{https_api.port}",))
    seen, out = fetch(tls_host, grant, https_api.url("/ok?x=1", host="localhost"))
    assert seen["status"] == 200 and json.loads(seen["body"])["host"] == f"localhost:{https_api.port}"
    assert [(s.sni, s.local, s.path) for s in https_api.seen] == [("localhost", "127.0.0.1", "/ok")]
    assert [(r["host"], r["path"], r["status"], r["refused"]) for r in out.http] == [
        (f"localhost:{https_api.port}", "/ok", 200, None)]


def test_https_goes_to_the_checked_address_with_the_name_in_sni(tls_host, https_api):
    # Only the host's resolver knows api.example.test (.test is never delegated): the request
    # reached the server because exoclaw connected to the address it checked, and the certificate
    # was verified for the name, not for that address.
    grant = Grant(allowed_hosts=(f"api.example.test:{https_api.port}",))
    seen, _ = fetch(tls_host, grant, https_api.url("/ok", host="api.example.test"))
    assert seen["status"] == 200
    assert [(s.sni, s.local, s.headers["Host"]) for s in https_api.seen] == [
        ("api.example.test", "127.0.0.1", f"api.example.test:{https_api.port}")]


def test_a_tls_connection_is_reused_only_for_the_name_it_was_verified_for(tls_host, https_api):
    grant = Grant(allowed_hosts=(f"localhost:{https_api.port}", f"api.example.test:{https_api.port}"))
    to = https_api.url("/landed", host="api.example.test")
    seen, out = fetch(tls_host, grant, https_api.url(f"/redirect?to={to}", host="localhost"))
    assert seen["status"] == 200
    # Same server, same address, a new name: a new handshake with that name, not the first connection.
    assert [(s.sni, s.path) for s in https_api.seen] == [("localhost", "/redirect"), ("api.example.test", "/landed")]
    assert https_api.handshakes == ["localhost", "api.example.test"]
    fetch(tls_host, grant, https_api.url("/again", host="localhost"))
    assert https_api.handshakes == ["localhost", "api.example.test"], "a kept-alive connection is reused for its name"


def tls_failed(host, grant, url) -> SandboxError:
    with pytest.raises(SandboxError) as caught:
        fetch(host, grant, url)
    assert (caught.value.kind, caught.value.reason) == ("network_error", "tls_failed"), str(caught.value)
    return caught.value


def test_a_certificate_for_another_name_is_refused(tls_host, https_other):
    grant = Grant(allowed_hosts=(f"localhost:{https_other.port}",))
    error = tls_failed(tls_host, grant, https_other.url(f"/x?appid={SECRET}", host="localhost"))
    assert error.message == (f"GET https://localhost:{https_other.port}/x: the server's certificate was refused: "
                             "Hostname mismatch, certificate is not valid for 'localhost'.")
    assert https_other.handshakes == ["localhost"] and https_other.seen == []
    assert [(r["host"], r["status"], r.get("error")) for r in error.http] == [
        (f"localhost:{https_other.port}", None, "tls_failed")]


def test_a_certificate_from_a_ca_the_host_was_not_given_is_refused(https_api):
    untrusting = Host(max_workers=1)  # certifi's CAs only
    try:
        error = tls_failed(untrusting, Grant(allowed_hosts=(f"localhost:{https_api.port}",)),
                           https_api.url("/x", host="localhost"))
    finally:
        untrusting.shutdown()
    assert error.message == (f"GET https://localhost:{https_api.port}/x: the server's certificate was refused: "
                             "unable to get local issuer certificate")
    assert https_api.seen == []


def test_https_to_a_server_that_speaks_plain_http_is_a_tls_failure(tls_host, api):
    error = tls_failed(tls_host, Grant(allowed_hosts=(f"localhost:{api.port}",)), api.url("/x", host="localhost")
                       .replace("http://", "https://"))
    assert error.message.startswith(f"GET https://localhost:{api.port}/x: TLS handshake failed (")
    assert api.seen == []


def test_a_redirect_from_https_to_a_port_not_granted_is_refused(tls_host, https_api, target):
    grant = Grant(allowed_hosts=(f"localhost:{https_api.port}",))
    error = refused(tls_host, grant, https_api.url(f"/redirect?to={target.url('/stolen', host='localhost')}",
                                                   host="localhost"), "port_not_granted")
    assert f"redirect refused (port_not_granted): {target.url('/stolen', host='localhost')}" in error.message
    assert [s.path for s in https_api.seen] == ["/redirect"] and target.seen == []


def test_a_header_secret_reaches_its_host_over_https(tls_host, https_api):
    grant = Grant(allowed_hosts=(f"localhost:{https_api.port}",), http_secrets=(
        {"host": f"https://localhost:{https_api.port}", "header": "Authorization", "format": "Bearer {secret}",
         "secret_env": "WEATHER_KEY"},))
    seen, out = fetch(tls_host, grant, https_api.url("/weather", host="localhost"), environ={"WEATHER_KEY": SECRET})
    assert [(s.sni, s.headers["Authorization"]) for s in https_api.seen] == [("localhost", f"Bearer {SECRET}")]
    assert seen["headers"]["x-echo-authorization"] == "Bearer [redacted]" and SECRET not in out.output.decode()


# Through the agent runtime: a run whose tool uses an injected secret keeps it out of the tool
# result, the stored history and the log, and records the request on the run's tool call.

from agents.store import get_store  # noqa: E402
from sandbox.models import CapabilityGrant, HttpSecret, Plugin  # noqa: E402
from tests.runtime_fixtures import connect, make_agent  # noqa: E402,F401


def register_http_probe(api_port: int):
    plugin = Plugin(name="weather", wasm_path=str(spec("http_probe").wasm_path), declared_tools=[
        {"name": "fetch", "description": "An Extism HTTP request, made as given.", "input_schema": {"type": "object"}}])
    plugin.full_clean()
    plugin.save()
    grant = CapabilityGrant(plugin=plugin, allowed_hosts=[f"127.0.0.1:{api_port}"])
    grant.full_clean()
    grant.save()
    secret = HttpSecret(grant=grant, host=f"127.0.0.1:{api_port}", header="Authorization", format="Bearer {secret}",
                        secret_env="EXOCLAW_TEST_WEATHER_KEY")
    secret.full_clean()
    secret.save()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("fresh_layer", "process_store")
async def test_a_runs_tool_result_history_and_log_hold_no_injected_secret(connect, api, monkeypatch, caplog):
    from channels.db import database_sync_to_async

    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("EXOCLAW_TEST_WEATHER_KEY", SECRET)
    await database_sync_to_async(register_http_probe)(api.port)
    await make_agent("helper", tools=["weather"])
    client = await connect()
    request = {"method": "GET", "url": api.url("/now?city=rome")}
    sent = await client.result("chat.send", {"text": f"/tool weather.fetch {json.dumps(request)}", "agent": "helper"})
    events = await client.finished(sent["run_id"])
    result = next(e for e in events if e["type"] == "tool_result")
    assert not result["is_error"], result
    # The fake API got the key and echoed it back in its body and headers.
    assert api.seen[0].headers["Authorization"] == f"Bearer {SECRET}"
    assert json.loads(result["content"])["headers"]["x-echo-authorization"] == "Bearer [redacted]"
    history = await client.result("sessions.history", {"session_key": sent["session_key"]})
    run = await get_store().get_run(sent["run_id"])
    assert [(r["method"], r["host"], r["path"], r["status"]) for r in run["tool_calls"][0]["http"]] == [
        ("GET", f"127.0.0.1:{api.port}", "/now", 200)]
    for where, text in (("the tool result", json.dumps(events)), ("the stored history", json.dumps(history)),
                        ("the run's tool calls", json.dumps(run["tool_calls"], default=str)), ("the log", caplog.text)):
        assert SECRET not in text, f"the secret leaked into {where}"


def register_https_probe(*ports: int):
    plugin = Plugin(name="probe", wasm_path=str(spec("http_probe").wasm_path), declared_tools=[
        {"name": "fetch", "description": "An Extism HTTP request, made as given.", "input_schema": {"type": "object"}}])
    plugin.full_clean()
    plugin.save()
    grant = CapabilityGrant(plugin=plugin, allowed_hosts=[f"localhost:{port}" for port in ports])
    grant.full_clean()
    grant.save()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("fresh_layer", "process_store")
async def test_the_operators_ca_bundle_setting_is_trusted_and_a_wrong_certificate_is_a_tool_error(
        connect, https_api, https_other, tls_ca, settings, monkeypatch):
    from channels.db import database_sync_to_async

    from sandbox import process_host

    settings.SANDBOX_HTTP_CA_BUNDLE = str(tls_ca.path)
    monkeypatch.setattr(process_host, "_host", None)  # the process's host, made from the settings above
    try:
        await database_sync_to_async(register_https_probe)(https_api.port, https_other.port)
        await make_agent("helper", tools=["probe"])
        client = await connect()
        results = []
        for server in (https_api, https_other):
            request = {"method": "GET", "url": server.url(f"/now?appid={SECRET}", host="localhost")}
            sent = await client.result("chat.send", {"text": f"/tool probe.fetch {json.dumps(request)}",
                                                     "agent": "helper"})
            events = await client.finished(sent["run_id"])
            results.append(next(e for e in events if e["type"] == "tool_result"))
    finally:
        if process_host._host is not None:
            process_host._host.shutdown()
    ok, wrong = results
    assert not ok["is_error"] and json.loads(ok["content"])["status"] == 200, ok
    assert [(s.sni, s.path) for s in https_api.seen] == [("localhost", "/now")]
    assert wrong["is_error"] and wrong["content"] == (
        f"network_error: GET https://localhost:{https_other.port}/now: the server's certificate was refused: "
        "Hostname mismatch, certificate is not valid for 'localhost'."), wrong
    assert https_other.seen == []


def test_exoclaws_http_functions_are_linked_into_exactly_the_plugins_that_import_them():
    from sandbox.hostfns import functions_for
    from tests.sandbox_fixtures import wasm_path

    def linked(name):
        return [f.name for f in functions_for(wasm_path(name).read_bytes())]

    assert linked("http_probe") == ["http_request", "http_status_code", "http_headers"]
    assert linked("http_get") == ["http_request", "http_status_code"]
    assert linked("echo") == [] and linked("read_file") == []
    assert [f.name for f in functions_for(b"\0asm\1\0\0\0\2\x99")] == ["http_request", "http_status_code", "http_headers"]
