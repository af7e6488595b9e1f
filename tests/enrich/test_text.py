"""HTML → text and hashtag extraction, on the HTML Mastodon really sends."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.enrich.text import extract_hashtags, html_to_text, merge_tags
from monitor.tags import normalise_tag

# The example status of sources.md, verbatim
MASTODON_CONTENT = (
    '<p>Still listening. <a href="https://mastodon.example/tags/MeToo" class="mention hashtag" '
    'rel="tag">#<span>MeToo</span></a></p>'
)

# What Mastodon does to a long link, a mention and two paragraphs with a line break
MASTODON_RICH = (
    '<p><span class="h-card" translate="no"><a href="https://remote.example/@alice" '
    'class="u-url mention">@<span>alice</span></a></span> I read the whole report<br />'
    'and I am still angry.</p><p>Source: <a href="https://news.example.org/2025/11/20/'
    'a-very-long-article-title-here" target="_blank" rel="nofollow noopener" translate="no">'
    '<span class="invisible">https://</span><span class="ellipsis">news.example.org/2025/11/2'
    '</span><span class="invisible">0/a-very-long-article-title-here</span></a></p>'
    '<p><a href="https://mastodon.example/tags/NotAllMen" class="mention hashtag" rel="tag">'
    '#<span>NotAllMen</span></a> <a href="https://mastodon.example/tags/MeToo" '
    'class="mention hashtag" rel="tag">#<span>MeToo</span></a></p>'
)


def test_mastodon_sample_becomes_plain_text() -> None:
    assert html_to_text(MASTODON_CONTENT) == "Still listening. #MeToo"


def test_paragraphs_breaks_mentions_and_shortened_links_read_well() -> None:
    text = html_to_text(MASTODON_RICH)
    assert text == (
        "@alice I read the whole report\nand I am still angry.\n\n"
        "Source: https://news.example.org/2025/11/20/a-very-long-article-title-here\n\n"
        "#NotAllMen #MeToo"
    )


def test_entities_are_decoded_once() -> None:
    html = "<p>Tom &amp; Jerry &lt;3 it&#39;s &quot;fine&quot; &#x1F44D; &amp;amp;</p>"
    assert html_to_text(html) == "Tom & Jerry <3 it's \"fine\" 👍 &amp;"


def test_escaped_script_stays_inert_text_and_real_script_is_dropped() -> None:
    typed = "<p>they wrote &lt;script&gt;alert(1)&lt;/script&gt; in the bio</p>"
    assert html_to_text(typed) == "they wrote <script>alert(1)</script> in the bio"
    injected = "<p>hello</p><script>document.cookie</script><style>p{}</style><p>world</p>"
    assert html_to_text(injected) == "hello\n\nworld"


def test_source_whitespace_collapses_like_a_browser() -> None:
    html = "<p>  one\n   two\t three </p>\n\n<p>four</p>"
    assert html_to_text(html) == "one two three\n\nfour"


def test_broken_or_empty_markup_does_not_raise() -> None:
    assert html_to_text("") == ""
    assert html_to_text("<p></p><p><br></p>") == ""
    assert html_to_text("</div></p>text<b>bold") == "textbold"
    assert html_to_text("a<p>b</p>c") == "a\n\nb\n\nc"


def test_plain_text_passes_through_with_tidy_whitespace() -> None:
    assert html_to_text("no markup here,  just   text\n\n\n\nand more") == (
        "no markup here, just text\n\nand more"
    )


def test_lists_and_quotes_keep_their_lines() -> None:
    html = "<p>Steps:</p><ul><li>listen</li><li>believe</li></ul><blockquote><p>q</p></blockquote>"
    assert html_to_text(html) == "Steps:\n\nlisten\nbelieve\n\nq"


def test_private_use_markers_in_input_cannot_forge_breaks() -> None:
    assert html_to_text("<p>a\ue000b\ue001c</p>") == "abc"


def test_many_posts_in_one_thread_reuse_the_parser_safely() -> None:
    # the parser document is recycled every 2000 posts; results must not change
    outputs = {html_to_text(f"<p>post {i}<br>line</p>") for i in range(4500)}
    assert len(outputs) == 4500
    assert "post 4499\nline" in outputs


# ------------------------------------------------------------------ hashtags


def test_hashtags_found_and_normalised_in_order() -> None:
    text = "#MeToo. And #HowIWillChange, #NotAllMen! #MeToo's reach #metoo"
    assert extract_hashtags(text) == ["metoo", "howiwillchange", "notallmen"]


def test_unicode_hashtags_are_kept() -> None:
    text = "#YoTambién #BalanceTonPorc #МыНеМолчим #MeTooインド #हिंदी #été ＃ＦＵＬＬ"
    assert extract_hashtags(text) == [
        "yotambién", "balancetonporc", "мынемолчим", "metooインド",
        "हिंदी", "été", "full",
    ]


def test_urls_entities_and_numbers_are_not_hashtags() -> None:
    text = (
        "see https://example.com/page#section and www.example.org/#top and "
        "https://x.example/?q=#notatag it&#39;s &#x27; we are #1 a#b (#paren) C# ##double "
        "https://x.example/a-#dash WWW.EXAMPLE.ORG/=#upper https://x.example/\u00a0#after"
    )
    assert extract_hashtags(text) == ["paren", "after"]


def test_merge_puts_platform_tags_first_and_drops_repeats_and_empties() -> None:
    merged = merge_tags(["MeToo", "#HowIWillChange", "", "#", "metoo"],
                        ["notallmen", "metoo"])
    assert merged == ("metoo", "howiwillchange", "notallmen")


_texts = st.text(
    alphabet=st.characters(codec="utf-8"), max_size=200
) | st.lists(
    st.sampled_from(["#", "＃", "#MeToo", " ", "http://x/#a", "&#39;", "é", "ß", "İ", "'s",
                     ".", "a", "_", "٣", "\u0301", "ﬁ", "ǅ"]),
    max_size=30,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(_texts)
def test_normalise_tag_is_idempotent_and_clean(raw: str) -> None:
    once = normalise_tag(raw)
    assert normalise_tag(once) == once
    assert "#" not in once and "＃" not in once
    assert once == once.strip()


@settings(max_examples=300, deadline=None)
@given(_texts)
def test_extracted_tags_are_clean_unique_and_stable(text: str) -> None:
    tags = extract_hashtags(text)
    assert all(tag and "#" not in tag and tag == normalise_tag(tag) for tag in tags)
    assert len(tags) == len(set(tags))
    # writing the tags back out as text gives the same tags again
    assert extract_hashtags(" ".join("#" + tag for tag in tags)) == tags
