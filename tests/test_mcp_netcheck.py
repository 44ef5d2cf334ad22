"""common.netcheck: which hosts a remote MCP server's URL may reach (pure checks, and one real lookup)."""

import pytest

from common.netcheck import HostRefused, check_url, host_problem, split_url


@pytest.mark.parametrize("host,addresses,kind", [
    ("127.0.0.1", ["127.0.0.1"], "loopback"),
    ("localhost", ["127.0.0.1"], "loopback"),
    ("::1", ["::1"], "loopback"),
    ("intranet.example.com", ["10.1.2.3"], "private"),
    ("router", ["192.168.1.1"], "private"),
    ("fd12::1", ["fd12::1"], "private"),
    ("169.254.10.1", ["169.254.10.1"], "link-local"),
    ("100.64.0.7", ["100.64.0.7"], "carrier-grade NAT"),
    ("224.0.0.1", ["224.0.0.1"], "multicast"),
    ("0.0.0.0", ["0.0.0.0"], "unspecified"),
    ("169.254.169.254", ["169.254.169.254"], "cloud metadata"),
    ("100.100.100.200", ["100.100.100.200"], "cloud metadata"),
    ("mapped", ["::ffff:10.0.0.1"], "private"),
    ("rebinding.example.com", ["93.184.216.34", "127.0.0.1"], "loopback"),
])
def test_inside_addresses_are_refused_with_the_reason(host, addresses, kind):
    assert f"is a {kind} address" in host_problem(host, addresses)


def test_public_addresses_pass():
    assert host_problem("mcp.example.com", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]) is None


@pytest.mark.parametrize("allow", [["127.0.0.1"], ["127.0.0.0/8"], ["LOCALHOST"]])
def test_naming_a_host_address_or_network_allows_it(allow):
    assert host_problem("localhost", ["127.0.0.1"], allow) is None


def test_a_network_does_not_allow_the_metadata_address_inside_it_but_naming_it_does():
    assert "cloud metadata" in host_problem("169.254.169.254", ["169.254.169.254"], ["169.254.0.0/16"])
    assert host_problem("169.254.169.254", ["169.254.169.254"], ["169.254.169.254"]) is None


@pytest.mark.parametrize("url", ["ftp://example.com/", "example.com/mcp", "http://", "http://host:99999/"])
def test_only_http_urls_with_a_host_are_usable(url):
    with pytest.raises(HostRefused):
        split_url(url)


@pytest.mark.asyncio
async def test_check_url_resolves_the_name_and_refuses_loopback_unless_named():
    with pytest.raises(HostRefused, match="localhost .* is a loopback address"):
        await check_url("http://localhost:9/mcp")
    await check_url("http://localhost:9/mcp", allow=["localhost"])
