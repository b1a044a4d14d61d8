"""The redaction corpus in process: every secret shape masked, every look-alike kept unchanged.

The same corpus goes through the real plugin in tests/reliability/test_secret_corpus.py.
"""

from __future__ import annotations

import json

import pytest

from cni_logger import redact
from tests.harness.redaction_corpus import LOOKALIKES, SECRETS

KEYS = redact.DEFAULT_REDACT_KEYS


def test_the_corpus_is_as_big_as_promised() -> None:
    assert len(SECRETS) >= 100 and len(LOOKALIKES) >= 50
    secrets = [s for case in SECRETS.values() for s in case.secrets]
    assert len(secrets) == len(set(secrets)), "each secret names one case"


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_secret_shape_is_masked(name: str) -> None:
    case = SECRETS[name]
    out = redact.scrub(case.cni_args or case.config, KEYS)
    text = json.dumps(out)
    assert [s for s in case.secrets if s in text or json.dumps(s)[1:-1] in text] == [], text
    assert redact.MASK in text
    assert [k for k in case.kept if k not in text] == [], text


@pytest.mark.parametrize("name", sorted(LOOKALIKES))
def test_look_alike_is_kept(name: str) -> None:
    config = LOOKALIKES[name]
    assert redact.scrub(config, KEYS) == config
