"""Credentials made up for a test: fresh AWS-shaped keys and a private key, never checked in."""

from __future__ import annotations

import secrets
import string
import subprocess


def fake_access_key_id() -> str:
    return "AKIA" + "".join(secrets.choice(string.ascii_uppercase + "234567") for _ in range(16))


def fake_secret_key() -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits + "/+") for _ in range(40))


def private_key_pem() -> bytes:
    """A fresh key made for the test (none is checked into the repository)."""
    return subprocess.run(
        ["openssl", "genpkey", "-algorithm", "ed25519"], capture_output=True, check=True
    ).stdout
