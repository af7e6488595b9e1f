"""Fuzz: Mastodon Status entities → Post or StatusRejected naming the field."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import strategies as st

from monitor.sources.mastodon import StatusRejected, parse_status
from tests.fuzz.strategies import (
    Stored,
    examples,
    handles,
    hosts,
    html_texts,
    iso_times,
    junk,
    outcome,
    payload,
    record,
    run,
    store_all,
    tags,
    texts,
    urls,
)

account = record(acct=st.one_of(handles, st.builds("{}@{}".format, handles, hosts)),
                 username=handles, display_name=texts)
status = record(
    id=st.integers(0, 2**63).map(str), uri=urls, url=urls, created_at=iso_times,
    content=html_texts, account=account, tags=st.lists(record(name=tags, url=urls), max_size=4),
    sensitive=st.booleans(), spoiler_text=texts, reblog=st.one_of(st.none(), st.just({}), junk),
    language=st.sampled_from(["en", "de", None, "", "zz-ZZ", "x" * 40]),
    edited_at=st.one_of(st.none(), iso_times))


@examples
def test_status(n_examples: int, tmp_path: Path) -> None:
    stored = Stored()

    def check(item: object) -> None:
        size = len(json.dumps(item, default=str))
        result = outcome(lambda: parse_status(item, "mastodon.social", size), StatusRejected)
        if not isinstance(result, StatusRejected):
            stored.add(result)

    run(payload(status), check, n_examples)
    store_all(stored.posts, tmp_path)
