from hypothesis import given
from hypothesis import strategies as st

from harness.globs import matches, matching, select_names, suggestions

NAMES = ["gpt-image-1@openai", "gemini-2.5-flash-image@google", "gemini-2.5-flash-image@fal", "flux-dev@fal"]


def test_a_provider_glob_selects_every_target_of_that_provider_in_order():
    assert matching(NAMES, "*@fal") == ["gemini-2.5-flash-image@fal", "flux-dev@fal"]


def test_patterns_select_in_the_names_order_and_report_what_matched_nothing():
    chosen, unmatched = select_names(NAMES, ["flux-dev@fal", "gpt-*", "dalle@nowhere"])
    assert chosen == ["gpt-image-1@openai", "flux-dev@fal"]
    assert unmatched == ["dalle@nowhere"]


def test_no_patterns_select_everything():
    assert select_names(NAMES, []) == (NAMES, [])


def test_matching_is_case_sensitive_like_target_names():
    assert not matches("GPT-image-1@openai", "gpt-*")


def test_a_misspelt_name_gets_a_suggestion():
    assert suggestions("flux-dev@fall", NAMES)[0] == "flux-dev@fal"


@given(st.text(alphabet=st.characters(blacklist_characters="*?["), min_size=1))
def test_a_name_without_glob_characters_matches_itself(name):
    assert matches(name, name)
