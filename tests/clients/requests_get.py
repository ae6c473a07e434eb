"""Python requests run through the transparent proxy by the Rust tests (`vault run`).

Usage: python3 requests_get.py URL [METHOD]
Prints the status code on one line, then the body; exits 0 whenever a response came back
(whatever its status) and 1, with the exception on stderr, when none did. requests reads
HTTPS_PROXY (credentials from its userinfo become Proxy-Authorization on the CONNECT),
NO_PROXY and REQUESTS_CA_BUNDLE from the environment by itself.
"""

import sys

import requests


def main() -> int:
    if len(sys.argv) < 2:
        print("usage: python3 requests_get.py URL [METHOD]", file=sys.stderr)
        return 2
    url = sys.argv[1]
    method = sys.argv[2] if len(sys.argv) > 2 else "GET"
    try:
        response = requests.request(method, url, timeout=20)
    except requests.RequestException as error:
        print(f"error: {method} {url} failed: {error!r}", file=sys.stderr)
        return 1
    sys.stdout.write(f"{response.status_code}\n{response.text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
